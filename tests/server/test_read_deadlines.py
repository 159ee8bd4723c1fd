"""Read deadlines, bad framing and the lingering close of server/, over raw sockets (and
urllib, a client that sends its whole body before it reads): a request whose head or body
stalls gets 408 and a close, broken chunked framing gets 400 and a close, and an early
answer to a client still sending its body reaches that client instead of a reset."""
from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

import pytest

from gatehouse.server import H1Protocol
from tests.server.serving import serve_h1
from tests.server.test_protocol import read_response

HEADER_TIMEOUT, BODY_TIMEOUT = 0.5, 1.0
seen: dict[str, object] = {}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/early":  # refuses the body before reading it, as a 413 does
        body = b'{"error": "too large"}'
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
        return
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            seen["gone"] = size  # the app is let go: whatever it held is released
            return
        size += len(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    out = b"%d" % size
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(out))]})
    await send({"type": "http.response.body", "body": out})


@pytest.fixture(scope="module")
def port():
    with serve_h1(app, H1Protocol.configured(HEADER_TIMEOUT, BODY_TIMEOUT), timeout_keep_alive=5) as port:
        yield port


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def answer_and_close(s: socket.socket) -> tuple[bytes, dict[str, str], bytes, float]:
    t0 = time.monotonic()
    status, headers, body = read_response(s, bytearray())
    assert s.recv(10) == b""  # and the connection is closed
    return status, headers, body, time.monotonic() - t0


def test_a_head_that_stops_arriving_gets_408(port):
    s = connect(port)
    s.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\n")
    status, headers, _, waited = answer_and_close(s)
    assert status.startswith(b"HTTP/1.1 408") and headers["connection"] == "close"
    assert waited < HEADER_TIMEOUT + 1


def test_a_head_dripped_byte_by_byte_gets_408_at_its_deadline(port):
    """Each byte is activity, so an idle timeout alone never fires (slowloris)."""
    s = connect(port)
    t0 = time.monotonic()
    head = b"GET /x HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100
    try:
        for byte in head:
            s.sendall(bytes([byte]))
            time.sleep(0.05)
    except OSError:
        pass  # closed by the server while dripping: what it should do
    status, _, _ = read_response(s, bytearray())
    assert status.startswith(b"HTTP/1.1 408") and time.monotonic() - t0 < HEADER_TIMEOUT + 1.5


@pytest.mark.parametrize("drip", [False, True])
def test_a_body_that_stalls_gets_408_and_the_app_is_released(port, drip):
    seen.pop("gone", None)
    s = connect(port)
    s.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b"a" * 10)
    t0 = time.monotonic()
    if drip:
        try:
            for _ in range(60):  # one byte every 0.05 s would take 50 s to finish
                s.sendall(b"a")
                time.sleep(0.05)
        except OSError:
            pass
    status, headers, _ = read_response(s, bytearray())
    assert status.startswith(b"HTTP/1.1 408") and headers["connection"] == "close"
    assert time.monotonic() - t0 < BODY_TIMEOUT + 1.5
    deadline = time.monotonic() + 2
    while "gone" not in seen and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "gone" in seen  # the app's receive() returned http.disconnect


@pytest.mark.parametrize("body", [
    b"zz\r\nhello\r\n0\r\n\r\n",  # not a chunk size
    b"5\r\nhelloXX0\r\n\r\n",  # no CRLF after the chunk data
    b"5;" + b"x" * 10 + b"\r\nhello\r\n" + b"\xff\r\n",  # garbage where the next size goes
])
def test_malformed_chunked_body_gets_400_and_a_close(port, body):
    s = connect(port)
    s.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    status, headers, _, waited = answer_and_close(s)
    assert status.startswith(b"HTTP/1.1 400") and headers["connection"] == "close"
    assert waited < 0.5  # at once, not at a deadline


def test_whole_requests_are_not_touched_by_the_deadlines(port):
    s, buf = connect(port), bytearray()
    for _ in range(3):  # keep-alive, and each one slower than the head deadline apart
        s.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        status, _, body = read_response(s, buf)
        assert status == b"HTTP/1.1 200 OK" and body == b"5"
        time.sleep(HEADER_TIMEOUT + 0.1)
    # a body that arrives in parts, each in time, is served
    s.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
    time.sleep(BODY_TIMEOUT / 3)
    s.sendall(b"world")
    assert read_response(s, buf)[2] == b"10"


def test_urllib_sending_a_large_body_reads_the_early_answer(port):
    """urllib (http.client) writes the whole body with `Connection: close` before it reads:
    closing right after the 413 would reset the connection under it."""
    body = b"x" * (11 * 1024 * 1024)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/early", data=body,
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 413 and e.value.read() == b'{"error": "too large"}'


def test_lingering_is_bounded_by_the_body_deadline(port):
    s = connect(port)
    s.sendall(b"POST /early HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 100000000\r\n\r\n" + b"x" * 1000)
    t0 = time.monotonic()
    status, headers, _ = read_response(s, bytearray())
    assert status.startswith(b"HTTP/1.1 413") and headers["connection"] == "close"
    assert s.recv(10) == b""  # the write side is shut after the answer
    with pytest.raises(OSError):  # and the connection is gone after the deadline
        while time.monotonic() - t0 < BODY_TIMEOUT + 3:
            s.sendall(b"x" * 65536)
            time.sleep(0.01)
    assert time.monotonic() - t0 < BODY_TIMEOUT + 3
