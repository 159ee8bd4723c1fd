"""The lean HTTP/1.1 client against real local servers: raw asyncio servers for the edge cases
(awkward chunk boundaries, idle closes, bodies until close, stalls) and an aiohttp upstream."""
from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiohttp import web

from gatehouse.upstream import h1
from gatehouse.upstream.client import timeout
from tests.upstreams.harness import ServerThread, free_port

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, await reader.readexactly(length)


@contextlib.asynccontextmanager
async def raw_server(handle):
    """Serve `handle(reader, writer, connection_number)` on loopback; yields (url, connections)."""
    conns: list[asyncio.Task] = []

    async def on_conn(reader, writer):
        conns.append(asyncio.current_task())
        try:
            await handle(reader, writer, len(conns))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", conns
    finally:
        server.close()
        for task in conns:
            task.cancel()
        await asyncio.gather(*conns, return_exceptions=True)
        await server.wait_closed()


@pytest.fixture
async def pool():
    p = h1.H1Pool()
    yield p
    p.close()


async def test_keep_alive_reuses_one_connection_and_sends_one_clean_request(pool):
    seen: list[tuple[bytes, bytes]] = []

    async def handle(reader, writer, n):
        while True:
            seen.append(await read_request(reader))
            writer.write(OK)

    async with raw_server(handle) as (url, conns):
        for _ in range(3):
            resp = await pool.request("POST", url + "/v1/chat?x=1", b'{"a":1}', {"X-Test": "yes"})
            assert resp.status == 200 and resp.headers.get("content-type") == "text/plain"
            assert await resp.read() == b"hello"
            resp.release()
        assert len(conns) == 1
    head, body = seen[0]
    port = url.rsplit(":", 1)[1]
    assert head == (b"POST /v1/chat?x=1 HTTP/1.1\r\nHost: 127.0.0.1:" + port.encode()
                    + b"\r\nX-Test: yes\r\nContent-Length: 7\r\n\r\n")
    assert body == b'{"a":1}'


@pytest.mark.parametrize("step", [1, 3, 7, 50])
async def test_chunked_body_split_at_awkward_boundaries(pool, step):
    parts = [b"data: {\"token\": \"hel", b"lo\"}\r\n\r\n", b"x" * 300]
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Multi: a\r\nX-Multi: b\r\n\r\n"
           + b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n")

    async def handle(reader, writer, n):
        while True:
            await read_request(reader)
            for i in range(0, len(raw), step):
                writer.write(raw[i:i + step])
                await writer.drain()
                await asyncio.sleep(0)

    async with raw_server(handle) as (url, conns):
        for _ in range(2):
            async with await pool.request("GET", url + "/") as resp:
                assert resp.headers.getall("x-multi") == ["a", "b"]
                chunks = [c async for c in resp.content.iter_any()]
            assert b"".join(chunks) == b"".join(parts)
        assert len(conns) == 1  # the chunked body was read to its end: the connection was reused


async def test_idle_connection_closed_by_server_is_replaced(pool):
    async def handle(reader, writer, n):
        await read_request(reader)
        writer.write(OK)
        await writer.drain()  # then close: the pooled connection is dead

    async with raw_server(handle) as (url, conns):
        for _ in range(3):
            resp = await pool.request("GET", url + "/")
            assert await resp.read() == b"hello"
            await asyncio.sleep(0.05)
        assert len(conns) == 3


async def test_keep_alive_race_retried_once_on_a_fresh_connection(pool):
    async def handle(reader, writer, n):
        await read_request(reader)
        writer.write(OK)
        await reader.readuntil(b"\r\n\r\n")  # the second request on this connection: drop it unanswered

    async with raw_server(handle) as (url, conns):
        for _ in range(3):
            resp = await pool.request("POST", url + "/", b"{}")
            assert await resp.read() == b"hello"
        assert len(conns) == 3


async def test_fresh_connection_closed_before_reply_is_not_retried(pool):
    async def handle(reader, writer, n):
        await read_request(reader)  # ... and close without a word

    async with raw_server(handle) as (url, conns):
        with pytest.raises(h1.Disconnected):
            await pool.request("POST", url + "/", b"{}")
        assert len(conns) == 1


async def test_disconnect_mid_body_raises_after_the_bytes_that_arrived(pool):
    async def handle(reader, writer, n):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()

    async with raw_server(handle) as (url, conns):
        resp = await pool.request("GET", url + "/")
        got = []
        with pytest.raises(h1.Disconnected):
            async for chunk in resp.content.iter_any():
                got.append(chunk)
        resp.release()
        assert b"".join(got) == b"partial"


async def test_body_until_close(pool):
    async def handle(reader, writer, n):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"the end")

    async with raw_server(handle) as (url, conns):
        for _ in range(2):
            resp = await pool.request("GET", url + "/")
            assert await resp.read() == b"until the end"
            resp.release()
        assert len(conns) == 2  # such a connection is never pooled


async def test_read_timeout_before_headers_and_between_body_bytes(pool):
    async def handle(reader, writer, n):
        await read_request(reader)
        if n == 2:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await asyncio.sleep(5)

    async with raw_server(handle) as (url, conns):
        with pytest.raises(asyncio.TimeoutError):
            await pool.request("GET", url + "/", timeout=timeout(1.0, 0.2))
        resp = await pool.request("GET", url + "/", timeout=timeout(1.0, 0.2))
        with pytest.raises(asyncio.TimeoutError):
            await resp.read()
        resp.release()


async def test_refused_connection(pool):
    with pytest.raises(h1.ConnectFailed):
        await pool.request("GET", f"http://127.0.0.1:{free_port()}/", timeout=timeout(1.0, 1.0))


async def test_header_injection_refused(pool):
    with pytest.raises(ValueError):
        await pool.request("GET", "http://127.0.0.1:9/", headers={"X-A": "b\r\nX-Evil: 1"})


async def test_large_body_with_slow_consumer_is_flow_controlled(pool):
    body = bytes(range(256)) * (4 * 4096)  # 4 MiB

    async def handle(reader, writer, n):
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()

    async with raw_server(handle) as (url, conns):
        resp = await pool.request("GET", url + "/")
        got, biggest = [], 0
        async for chunk in resp.content.iter_any():
            got.append(chunk)
            biggest = max(biggest, len(chunk))
            await asyncio.sleep(0.002)
        assert b"".join(got) == body
        # without pause_reading the whole body would pile up while the consumer sleeps
        assert biggest < h1.HIGH_WATER + 512 * 1024
        assert await (await pool.request("GET", url + "/")).read() == body
        assert len(conns) == 1


def _app(recorder):
    async def chat(request: web.Request) -> web.StreamResponse:
        return web.json_response({"path": request.path, "host": request.headers["Host"]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def test_against_aiohttp_server_through_the_pool():
    from gatehouse.upstream.client import HttpPool

    pool = HttpPool()
    with ServerThread(_app) as upstream:
        for _ in range(2):
            resp = await pool.request("POST", upstream.url + "/v1/chat/completions", b"{}",
                                      {"Content-Type": "application/json"}, timeout(1.0, 5.0))
            assert isinstance(resp, h1.Response)
            assert resp.status == 200
            assert await resp.read() == (b'{"path": "/v1/chat/completions", "host": "127.0.0.1:%d"}'
                                         % upstream.port)
            resp.release()
        seen = upstream.recorder.last
        assert "Accept-Encoding" not in seen.headers and seen.headers["Content-Length"] == "2"
    await pool.close()
