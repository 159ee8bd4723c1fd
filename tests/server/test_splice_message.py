"""The server's side of the splice extension (asgi_ext.SPLICE, server/splice.py), driven by a plain
ASGI app: the upstream body (a real upstream/h1.Response from the OpenAI-wire test upstream)
reaches the client through `feed`, followed by `end()`, in exact chunked framing; `first_byte`
is called once; a response the server does not chunk (a 204) stays well-formed and the
connection serves the next request."""
from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from gatehouse.asgi_ext import SPLICE, splice_message
from gatehouse.upstream.h1 import H1Pool
from tests.server.serving import serve_h1
from tests.upstreams import openai_wire
from tests.upstreams.harness import ServerThread


class SplicingApp:
    """POSTs a streamed chat to the upstream and splices its body into the response."""

    def __init__(self, upstream_url: str):
        self.url = upstream_url + "/v1/chat/completions"
        self.pool: H1Pool | None = None
        self.first_bytes = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            if self.pool is not None:
                self.pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await receive()
        self.pool = self.pool or H1Pool()
        body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "a b c"}]})
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {openai_wire.API_KEY}"}
        resp = await self.pool.request("POST", self.url, body.encode(), headers)
        status = int(scope["query_string"] or b"200")
        await send({"type": "http.response.start", "status": status, "headers": [(b"x-spliced", b"1")]})
        assert SPLICE in scope["extensions"]

        def first_byte() -> None:
            self.first_bytes += 1

        def fail(exc: BaseException) -> bytes:
            return b"FAILED"

        await send(splice_message(resp, lambda b: b.replace(b"echo", b"ECHO"), lambda: b"data: END\n\n", fail,
                                  first_byte))
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@pytest.fixture(scope="module")
def served(openai_upstream: ServerThread) -> Iterator[tuple[SplicingApp, int]]:
    app = SplicingApp(openai_upstream.url)
    with serve_h1(app) as port:
        yield app, port


def _read_response(sock: socket.socket, buf: bytes) -> tuple[bytes, bytes, bytes]:
    """(head, de-chunked body or b'' for a bodiless response, what is left in the buffer)."""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, rest = buf.split(b"\r\n\r\n", 1)
    if b"transfer-encoding: chunked" not in head.lower():
        return head, b"", rest
    body = b""
    while True:
        while b"\r\n" not in rest:
            rest += sock.recv(65536)
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line, 16)
        while len(rest) < size + 2:
            rest += sock.recv(65536)
        if size == 0:
            return head, body, rest[2:]
        body, rest = body + rest[:size], rest[size + 2:]


def _request(query: str = "") -> bytes:
    return f"POST /{'?' + query if query else ''} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()


def test_the_body_goes_through_feed_then_end_in_exact_chunks(served: tuple[SplicingApp, int]) -> None:
    app, port = served
    before = app.first_bytes
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(_request())
        head, body, _ = _read_response(s, b"")
    assert head.startswith(b"HTTP/1.1 200 ") and b"x-spliced: 1" in head
    frames = body.split(b"\n\n")
    assert frames[-2:] == [b"data: END", b""] and b"data: [DONE]" in frames
    text = "".join(c["delta"].get("content") or "" for f in frames if f.startswith(b"data: {")
                   for c in json.loads(f[6:])["choices"])
    assert text == "ECHO: a b c"
    assert app.first_bytes == before + 1


def test_a_response_without_chunks_stays_well_formed_and_the_connection_serves_on(
        served: tuple[SplicingApp, int]) -> None:
    _, port = served
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(_request("204"))
        head, body, rest = _read_response(s, b"")
        assert head.startswith(b"HTTP/1.1 204 ") and body == b"" and rest == b""
        s.sendall(_request())
        head, body, _ = _read_response(s, rest)
        assert head.startswith(b"HTTP/1.1 200 ") and body.endswith(b"data: END\n\n")
