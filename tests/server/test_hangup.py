"""A client that hangs up while the app works on a request it has read whole (a non-streamed
upstream call): our server calls the callback of the disconnect watch it offers in the scope
(asgi_ext.DISCONNECT), which api/http.HangUp uses to cancel the work at once; the request then
ends as ClientGone. Served over raw sockets by uvicorn with H1Protocol, as `gatehouse serve`
runs it."""
from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from gatehouse.api.http import ClientGone, HangUp, Request
from tests.server.serving import serve_h1

outcome: dict[str, str] = {}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    req = Request(scope, receive, send)
    body = json.loads(await req.json_body(1000))
    tag = body["tag"]
    try:
        with HangUp(req):
            await asyncio.sleep(body["work"])  # the upstream call
    except ClientGone:
        outcome[tag] = "client_gone"
        return
    except asyncio.CancelledError:  # pragma: no cover - only if HangUp let the cancellation through
        outcome[tag] = "cancelled"
        raise
    outcome[tag] = "finished"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def port():
    with serve_h1(app) as port:
        yield port


def _post(s: socket.socket, tag: str, work: float) -> None:
    body = json.dumps({"tag": tag, "work": work}).encode()
    s.sendall(b"POST /work HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b"
              % (len(body), body))


def _wait_for(tag: str, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while tag not in outcome and time.monotonic() < deadline:
        time.sleep(0.01)
    return outcome.get(tag)


def test_a_hang_up_cancels_the_work_at_once(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        _post(s, "gone", 30)
        time.sleep(0.2)  # the app is at work
    started = time.monotonic()
    assert _wait_for("gone", 5) == "client_gone"
    assert time.monotonic() - started < 1.0, "noticed when the connection closed, not when the work ended"


def test_work_that_completes_answers_normally_and_the_connection_stays_usable(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for i in range(2):
            _post(s, f"done{i}", 0.05)
            buf = b""
            while not buf.endswith(b"ok"):
                buf += s.recv(4096)
            assert buf.startswith(b"HTTP/1.1 200 ")
            assert outcome[f"done{i}"] == "finished"


def test_under_another_asgi_server_hang_up_does_nothing_and_the_work_finishes():
    """uvicorn's own protocol offers no disconnect watch: HangUp is a no-op there."""
    with serve_h1(app, http="httptools") as other:  # type: ignore[arg-type]
        with socket.create_connection(("127.0.0.1", other), timeout=5) as s:
            _post(s, "elsewhere", 0.3)
            time.sleep(0.1)
        assert _wait_for("elsewhere", 5) == "finished"
