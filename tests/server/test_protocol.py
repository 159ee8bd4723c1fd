"""The HTTP/1.1 server protocol (server/), driven over raw sockets: uvicorn's Server with
H1Protocol plugged in, as `gatehouse serve` runs it, in a thread, serving a small ASGI app
whose paths ask for each behaviour."""
from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from gatehouse.server.protocol import MAX_HEAD_BYTES
from tests.server.serving import serve_h1

seen: dict[str, object] = {}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    if path == "/boom":
        raise ValueError("secret detail that must not reach the client")
    if path == "/inject":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1\r\nset-cookie: evil")]})
        await send({"type": "http.response.body", "body": b"no"})
        return
    if path == "/bad-name":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-ok", b"1"), (b"x bad:", b"1")]})
        await send({"type": "http.response.body", "body": b"no"})
        return
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"part%d;" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    if path == "/slow-first":  # a stream whose first token takes a while
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await asyncio.sleep(1.0)
        await send({"type": "http.response.body", "body": b"late", "more_body": False})
        return
    if path == "/big":
        size = int(scope["query_string"].decode().split("=")[1])
        block = b"x" * 65536
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % size)]})
        sent, longest = 0, 0.0
        while sent < size:
            n = min(len(block), size - sent)
            t0 = time.monotonic()
            await send({"type": "http.response.body", "body": block[:n], "more_body": sent + n < size})
            longest = max(longest, time.monotonic() - t0)
            sent += n
        seen["longest_send"] = longest
        return
    if path == "/wait-disconnect":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"started", "more_body": True})
        assert (await receive())["type"] == "http.request"  # the (empty) request body comes first
        seen["disconnect"] = (await receive())["type"]
        return
    body, parts = b"", 0
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        parts += 1
        if not msg.get("more_body"):
            break
    out = json.dumps({"method": scope["method"], "path": scope["path"], "raw_path": scope["raw_path"].decode(),
                      "query": scope["query_string"].decode(), "version": scope["http_version"],
                      "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
                      "body_len": len(body), "body_head": body[:20].decode(errors="replace"), "parts": parts}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(out))]})
    await send({"type": "http.response.body", "body": out})


@pytest.fixture(scope="module")
def port():
    with serve_h1(app, timeout_keep_alive=1) as port:
        yield port


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return s


def read_response(s: socket.socket, buf: bytearray) -> tuple[bytes, dict[str, str], bytes]:
    """One response from the socket (buf keeps bytes past it for the next call)."""
    while b"\r\n\r\n" not in buf:
        data = s.recv(65536)
        if not data:
            raise ConnectionError(f"closed before a response head: {bytes(buf)!r}")
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {k.decode().lower(): v.decode() for k, v in (ln.split(b": ", 1) for ln in lines[1:])}
    buf[:] = rest
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(buf) < n:
            data = s.recv(65536)
            if not data:
                raise ConnectionError("closed inside a body")
            buf += data
        body = bytes(buf[:n])
        buf[:] = buf[n:]
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            while b"\r\n" not in buf:
                buf += s.recv(65536)
            size_line, _, _ = bytes(buf).partition(b"\r\n")
            size = int(size_line, 16)
            while len(buf) < len(size_line) + 2 + size + 2:
                buf += s.recv(65536)
            start = len(size_line) + 2
            body += bytes(buf[start:start + size])
            buf[:] = buf[start + size + 2:]
            if size == 0:
                break
    else:  # delimited by the close
        while data := s.recv(65536):
            buf += data
        body, buf[:] = bytes(buf), b""
    return lines[0], headers, body


def request(method: str, target: str, body: bytes = b"", headers: str = "", version: str = "1.1") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    return f"{method} {target} HTTP/{version}\r\nHost: t\r\n{headers}{length}\r\n".encode() + body


def test_keep_alive_serves_requests_in_turn_and_pipelined(port):
    s, buf = connect(port), bytearray()
    s.sendall(request("POST", "/a", b'{"x":1}'))
    status, headers, body = read_response(s, buf)
    assert status == b"HTTP/1.1 200 OK" and "connection" not in headers
    assert json.loads(body)["body_head"] == '{"x":1}'
    s.sendall(request("GET", "/one") + request("POST", "/two", b"2" * 10) + request("GET", "/three"))
    paths = [json.loads(read_response(s, buf)[2])["path"] for _ in range(3)]
    assert paths == ["/one", "/two", "/three"]
    s.close()


def test_scope_path_query_and_headers(port):
    s, buf = connect(port), bytearray()
    s.sendall(request("GET", "/v1/a%20b?x=1&y=%2F", headers="X-Custom: Yes\r\n"))
    got = json.loads(read_response(s, buf)[2])
    assert got["path"] == "/v1/a b" and got["raw_path"] == "/v1/a%20b" and got["query"] == "x=1&y=%2F"
    assert ["x-custom", "Yes"] in got["headers"] and got["version"] == "1.1"
    s.sendall(b"GET http://example.test/abs?q=1 HTTP/1.1\r\nHost: example.test\r\n\r\n")
    got = json.loads(read_response(s, buf)[2])
    assert got["path"] == "/abs" and got["query"] == "q=1"


def test_chunked_and_large_request_bodies_arrive_whole(port):
    s, buf = connect(port), bytearray()
    s.sendall(b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    got = json.loads(read_response(s, buf)[2])
    assert got["body_len"] == 11 and got["body_head"] == "hello world"
    big = b"b" * (3 * 1024 * 1024)  # past the 64 KiB read pause, many times
    s.sendall(request("POST", "/big-upload", big))
    got = json.loads(read_response(s, buf)[2])
    assert got["body_len"] == len(big) and got["parts"] > 1


def test_expect_100_continue_is_answered_before_the_body(port):
    s, buf = connect(port), bytearray()
    s.sendall(b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    s.sendall(b"abcd")
    assert json.loads(read_response(s, buf)[2])["body_head"] == "abcd"


def test_malformed_request_gets_400_json_and_close(port):
    s, buf = connect(port), bytearray()
    s.sendall(b"GET / HTTP/1.1\r\nHost t\r\nbroken\r\n\r\n")
    status, headers, body = read_response(s, buf)
    assert status.startswith(b"HTTP/1.1 400") and headers["connection"] == "close"
    assert json.loads(body)["error"]["message"] == "Malformed HTTP request."
    assert s.recv(10) == b""


def test_oversized_head_gets_431(port):
    s, buf = connect(port), bytearray()
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-Pad: " + b"p" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n")
    status, _, body = read_response(s, buf)
    assert status.startswith(b"HTTP/1.1 431") and str(MAX_HEAD_BYTES) in json.loads(body)["error"]["message"]


def test_http_1_0_and_head(port):
    s, buf = connect(port), bytearray()
    s.sendall(request("GET", "/stream", version="1.0"))
    status, headers, body = read_response(s, buf)
    assert headers.get("connection") == "close" and "transfer-encoding" not in headers
    assert body == b"part0;part1;part2;"
    s = connect(port)
    s.sendall(request("HEAD", "/x") + request("GET", "/after-head"))
    status, headers, body = read_response(s, bytearray(s.recv(65536)))
    assert status == b"HTTP/1.1 200 OK" and int(headers["content-length"]) > 0
    # the HEAD response had no body bytes: the next response follows its head directly
    buf = bytearray()
    s.sendall(request("GET", "/next"))
    assert json.loads(read_response(s, buf)[2])["path"] in ("/after-head", "/next")


def test_streamed_response_is_chunked(port):
    s, buf = connect(port), bytearray()
    s.sendall(request("GET", "/stream"))
    status, headers, body = read_response(s, buf)
    assert headers["transfer-encoding"] == "chunked" and body == b"part0;part1;part2;"
    s.sendall(request("GET", "/again"))  # the connection is still usable after the last chunk
    assert json.loads(read_response(s, buf)[2])["path"] == "/again"


def test_a_stream_head_waits_for_the_first_chunk_only_within_the_loop_turn(port):
    """The head of a chunked response is held so it can leave with the first chunk, but not
    while the app waits for that chunk: the client has the head long before the body."""
    s, buf = connect(port), bytearray()
    s.sendall(request("GET", "/slow-first"))
    t0 = time.monotonic()
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    assert time.monotonic() - t0 < 0.8  # the body comes after 1 s
    assert buf.startswith(b"HTTP/1.1 200 OK\r\n") and buf.endswith(b"\r\n\r\n")  # the head alone
    status, headers, body = read_response(s, buf)
    assert headers["transfer-encoding"] == "chunked" and body == b"late"


def test_app_errors_become_500_without_details(port):
    s, buf = connect(port), bytearray()
    s.sendall(request("GET", "/boom"))
    status, headers, body = read_response(s, buf)
    assert status.startswith(b"HTTP/1.1 500") and b"secret" not in body and b"Traceback" not in body
    assert json.loads(body)["error"]["type"] == "server_error"
    s, buf = connect(port), bytearray()
    s.sendall(request("GET", "/inject"))
    status, headers, body = read_response(s, buf)
    assert status.startswith(b"HTTP/1.1 500") and "set-cookie" not in headers
    for _ in range(2):  # a name that failed its check is never remembered as checked
        s, buf = connect(port), bytearray()
        s.sendall(request("GET", "/bad-name"))
        status, headers, body = read_response(s, buf)
        assert status.startswith(b"HTTP/1.1 500") and "x-ok" not in headers


def test_slow_reader_gets_every_byte(port):
    """A response far larger than the socket buffers: `send` waits for the transport to drain
    (pause_writing / resume_writing) and nothing is lost or reordered."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    size = 48 * 1024 * 1024
    s.sendall(request("GET", f"/big?size={size}"))
    time.sleep(0.5)  # let the server fill every buffer and pause
    buf = bytearray()
    status, headers, body = read_response(s, buf)
    assert int(headers["content-length"]) == size and len(body) == size and body.count(b"x") == size
    assert seen["longest_send"] > 0.3  # a send waited out the client's pause: the buffer stayed bounded


def test_client_disconnect_reaches_the_app(port):
    seen.pop("disconnect", None)
    s = connect(port)
    s.sendall(request("GET", "/wait-disconnect"))
    assert b"started" in s.recv(65536) or b"started" in s.recv(65536)
    s.close()
    deadline = time.monotonic() + 5
    while "disconnect" not in seen and time.monotonic() < deadline:
        time.sleep(0.02)
    assert seen.get("disconnect") == "http.disconnect"


def test_idle_keep_alive_connection_is_closed(port):
    s, buf = connect(port), bytearray()
    s.sendall(request("GET", "/x"))
    read_response(s, buf)
    started = time.monotonic()
    assert s.recv(10) == b""  # closed by the server after timeout_keep_alive=1
    assert 0.5 < time.monotonic() - started < 4


def test_many_connections_at_once(port):
    async def one(i: int) -> bytes:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(request("POST", f"/n{i}", b"{}"))
        await w.drain()
        data = await r.read(65536)
        w.close()
        return data

    async def main() -> list[bytes]:
        return await asyncio.gather(*(one(i) for i in range(200)))

    answers = asyncio.run(main())
    assert all(a.startswith(b"HTTP/1.1 200") and b'"/n%d"' % i in a for i, a in enumerate(answers))
