"""The server's side of the splice extension (asgi_ext.SPLICE, server/splice.py), driven by a plain
ASGI app: the upstream body (a real upstream/h1.Response from the OpenAI-wire test upstream)
reaches the client through `feed`, followed by `end()`, in exact chunked framing; `first_byte`
is called once; a response the server does not chunk (a 204) stays well-formed and the
connection serves the next request; a splice asked for after the client left raises
ConnectionResetError from `send` and still releases its source."""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gatehouse.asgi_ext import SPLICE, SpliceSink, splice_message
from gatehouse.upstream.h1 import H1Pool, Response as H1Response
from tests.server.serving import serve_h1
from tests.upstreams import openai_wire
from tests.upstreams.harness import ServerThread


class SplicingApp:
    """POSTs a streamed chat to the upstream and splices its body into the response."""

    def __init__(self, upstream_url: str):
        self.url = upstream_url + "/v1/chat/completions"
        self.pool: H1Pool | None = None
        self.first_bytes = 0
        self.outcome: dict[str, str] = {}

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
        query = scope["query_string"]
        status = 200 if not query.isdigit() else int(query)
        await send({"type": "http.response.start", "status": status, "headers": [(b"x-spliced", b"1")]})
        assert SPLICE in scope["extensions"]
        if query == b"late":  # splice only once the client has gone
            while (await receive())["type"] != "http.disconnect":
                pass
            source = ReleaseRecorder(resp)
            try:
                await send(splice_message(source, lambda b: b, lambda: b"", lambda e: b"", lambda: None))
            except ConnectionResetError:
                self.outcome["late"] = "reset, released" if source.released else "reset, not released"
            return

        def first_byte() -> None:
            self.first_bytes += 1

        def fail(exc: BaseException) -> bytes:
            return b"FAILED"

        await send(splice_message(resp, lambda b: b.replace(b"echo", b"ECHO"), lambda: b"data: END\n\n", fail,
                                  first_byte))
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class ReleaseRecorder:
    """A SpliceSource that hands everything to a real h1 response and notes its release."""

    def __init__(self, resp: H1Response):
        self.resp, self.released = resp, False

    def splice(self, sink: SpliceSink) -> None:
        self.resp.splice(sink)

    def pause_reading(self) -> None:
        self.resp.pause_reading()

    def resume_reading(self) -> None:
        self.resp.resume_reading()

    def release(self) -> None:
        self.released = True
        self.resp.release()


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


def test_a_splice_after_the_client_left_raises_from_send_and_releases_its_source(
        served: tuple[SplicingApp, int]) -> None:
    app, port = served
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(_request("late"))
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
    deadline = time.monotonic() + 5
    while "late" not in app.outcome and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.outcome.get("late") == "reset, released"
