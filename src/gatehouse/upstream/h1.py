"""A lean HTTP/1.1 client for plain-http upstreams (vLLM, Ollama, llama.cpp inside a cluster).

Why: aiohttp's client cost ~30% of the gateway's CPU per proxied request (request_info, header
preparation, response machinery) — far more than a keep-alive POST to a known upstream needs.
This client does only that: one write of request line + headers + body, httptools parsing, and a
keep-alive pool per (host, port). https upstreams stay on aiohttp (see upstream/client.HttpPool).

A connection goes back to the pool only after its response was read to the end. A reused
connection that dies before any byte of the response arrived (the server closed it while idle:
the classic keep-alive race) is retried once on a fresh connection; nothing else is retried.
"""
from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict

from gatehouse.asgi_ext import SpliceSink
from gatehouse.upstream.pool import ConnectionLimit

HIGH_WATER = 256 * 1024  # buffered body bytes at which we stop reading the socket
LOW_WATER = 64 * 1024  # ...and resume once the consumer has taken it


class H1Error(Exception):
    """Base of this client's transport errors (upstream/client.transport_errors maps them)."""


class ConnectFailed(H1Error):
    """No TCP connection could be opened (refused, unresolvable, unroutable)."""


class Disconnected(H1Error):
    """The upstream closed the connection before the response was complete."""


class ProtocolError(H1Error):
    """The upstream's reply is not valid HTTP/1.1."""


class _Stale(Disconnected):
    """A reused connection was closed before any byte of the response: safe to retry once."""


@lru_cache(maxsize=512)
def _split(url: str) -> tuple[str, int, str]:
    """(host, port, ' <target> HTTP/1.1\\r\\nHost: <host>\\r\\n') — parsed once per distinct URL."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    host_header = f"[{host}]" if ":" in host else host
    if parts.port and parts.port != 80:
        host_header += f":{parts.port}"
    return host, port, f" {target} HTTP/1.1\r\nHost: {host_header}\r\n"


class Response:
    """The part of aiohttp.ClientResponse the providers use: status, headers, read(),
    content.iter_any(), release(), async with (upstream/transport.UpstreamResponse); and, which
    aiohttp's has not, an asgi_ext.SpliceSource: splice(), pause_reading(), resume_reading()."""

    def __init__(self, conn: _Conn, status: int, headers: CIMultiDict[str]):
        self.status = status
        self.headers = headers
        self._conn: _Conn | None = conn
        self._chunks: list[bytes] = []
        self._size = 0
        self._done = False
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._body: bytes | None = None
        self._sink: SpliceSink | None = None  # see splice()
        enc = headers.get("Content-Encoding", "").lower()  # only if an upstream sends it unasked
        self._inflate = zlib.decompressobj(47 if enc == "gzip" else 15) if enc in ("gzip", "deflate") else None

    @property
    def content(self) -> Response:
        """So `resp.content.iter_any()` reads as with aiohttp (a property: an attribute would be a
        reference cycle, leaving every response to the cyclic GC)."""
        return self

    # -- fed by the connection -----------------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        if self._inflate is not None:
            data = self._inflate.decompress(data)
        if self._sink is not None:
            self._sink.data(data)
            return
        self._chunks.append(data)
        self._size += len(data)
        self._wake()

    def _finish(self, exc: BaseException | None = None) -> None:
        if not self._done and self._exc is None:
            self._exc = exc
            self._done = exc is None
            self._wake()
            if self._sink is not None:
                self._sink.end(exc)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- consumer side ---------------------------------------------------------------------------
    async def _next(self) -> bytes:
        """Everything buffered so far; b'' at the end of the body."""
        while not self._chunks:
            if self._exc is not None:
                raise self._exc
            if self._done:
                self.release()  # the body is complete: the connection can serve the next request
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        if self._conn is not None and self._conn.paused:
            self._conn.resume()
        return data

    async def read(self) -> bytes:
        if self._body is None:
            parts = []
            while chunk := await self._next():
                parts.append(chunk)
            self._body = parts[0] if len(parts) == 1 else b"".join(parts)
        return self._body

    async def iter_any(self) -> AsyncIterator[bytes]:
        while chunk := await self._next():
            yield chunk

    # -- splice: the body handed on from the connection's data callback ---------------------------
    def splice(self, sink: SpliceSink) -> None:
        """Deliver the rest of the body to `sink` as it arrives, in the connection's data callback
        (no task wake-up per chunk): `sink.data(bytes)` per chunk, then `sink.end(exc)` once with
        None at the end of the body or the transport error. Bytes already buffered go first."""
        self._sink = sink
        if self._chunks:
            data = b"".join(self._chunks)
            self._chunks.clear()
            self._size = 0
            sink.data(data)
        if self._exc is not None or self._done:
            sink.end(self._exc)
        elif self._conn is not None and self._conn.paused:
            self._conn.resume()

    def pause_reading(self) -> None:
        """Stop reading the socket (the consumer cannot take more for now)."""
        conn = self._conn
        if conn is not None and not conn.paused and not conn.complete and not conn.lost:
            conn.paused = True
            conn.transport.pause_reading()  # type: ignore[union-attr]

    def resume_reading(self) -> None:
        conn = self._conn
        if conn is not None and conn.paused:
            conn.resume()

    def release(self) -> None:
        self._sink = None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.done(reusable=self._done and self._exc is None)

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.release()


class _Conn(asyncio.Protocol):
    """One TCP connection; parses the response of the one request in flight on it."""

    def __init__(self, pool: H1Pool, key: tuple[str, int]):
        self.pool, self.key, self.loop = pool, key, pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.head_fut: asyncio.Future[Response] | None = None
        self.resp: Response | None = None
        self.raw_headers: list[tuple[str, str]] = []
        self.lost = self.paused = self.complete = self.until_close = self.keep_alive = False
        self.reused = self.got_bytes = False
        self.read_timeout: float | None = None
        self.head_deadline = 0.0  # first-byte timeout: when the response head must have come (0: none)
        self.last_data = self.idle_since = 0.0
        self.limit: ConnectionLimit | None = None  # the provider slot this connection holds while in use
        self.timer: asyncio.TimerHandle | None = None
        self.idle: deque[_Conn] | None = None  # the pool list this connection waits in, if idle

    async def send(self, head: bytes, body: bytes | None, read_timeout: float | None, reused: bool,
                   first_byte: float | None = None) -> Response:
        self.parser = httptools.HttpResponseParser(self)
        self.raw_headers, self.resp = [], None
        self.complete = self.until_close = self.keep_alive = self.got_bytes = False
        self.reused, self.read_timeout = reused, read_timeout
        self.head_fut = self.loop.create_future()
        self.transport.write(head + body if body else head)  # type: ignore[union-attr]
        self.last_data = now = self.loop.time()
        self.head_deadline = now + first_byte if first_byte else 0.0
        if read_timeout or first_byte:
            self.timer = self.loop.call_at(self._deadline(), self._on_timer)
        try:
            return await self.head_fut
        except BaseException:  # includes cancellation: the connection's state is unknown
            self.close()
            raise

    # -- asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.parser is None:  # bytes on an idle connection: it cannot be trusted any more
            self.close()
            return
        self.got_bytes = True
        self.last_data = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(ProtocolError(f"invalid HTTP response: {e}"))

    def eof_received(self) -> None:
        return None  # close the transport; connection_lost decides what the EOF meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._free_slot()
        self.pool.conns.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        if self.idle is not None:
            self.idle.remove(self)
            self.idle = None
        if self.head_fut is not None and not self.head_fut.done():
            self.head_fut.set_exception(_Stale() if self.reused and not self.got_bytes else Disconnected())
        elif self.resp is not None and not self.complete:
            self.resp._finish(None if self.until_close else Disconnected())

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()  # type: ignore[union-attr]
        if 100 <= status < 200:  # an interim response (100 Continue): the real one follows
            self.raw_headers = []
            return
        headers = CIMultiDict(self.raw_headers)
        chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        self.until_close = not chunked and "Content-Length" not in headers and status not in (204, 304)
        self.resp = Response(self, status, headers)
        self.head_deadline = 0.0
        if self.head_fut is not None and not self.head_fut.done():
            self.head_fut.set_result(self.resp)

    def on_body(self, body: bytes) -> None:
        resp = self.resp
        if resp is None:
            return
        resp._feed(body)
        if resp._size > HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        if self.resp is None:  # end of an interim response
            return
        if self.complete:  # a second response nobody asked for
            self.keep_alive = False
            return
        self.complete = True
        self._free_slot()  # the upstream's part is done (see upstream/pool.py)
        self.keep_alive = self.parser.should_keep_alive()  # type: ignore[union-attr]
        if self.paused:  # no more body will come: read again so an idle close is noticed
            self.paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.resp._finish()

    # -- flow control, timeouts, end of use ------------------------------------------------------
    def resume(self) -> None:
        self.paused = False
        if not self.lost:
            self.transport.resume_reading()  # type: ignore[union-attr]
            self.last_data = self.loop.time()  # the read timeout counts from when we asked again
            if self.read_timeout and self.timer is None and not self.complete:
                self.timer = self.loop.call_at(self._deadline(), self._on_timer)

    def _deadline(self) -> float:
        """When the connection times out: `read_timeout` after the last byte, or earlier at
        the first-byte deadline while the response head has not come."""
        deadline = self.last_data + self.read_timeout if self.read_timeout else float("inf")
        return min(deadline, self.head_deadline) if self.head_deadline else deadline

    def _on_timer(self) -> None:
        """One timer per read-timeout period, not one per chunk: re-armed from the last byte."""
        self.timer = None
        if self.lost or self.complete or self.paused or not (self.read_timeout or self.head_deadline):
            return
        deadline = self._deadline()
        if self.loop.time() >= deadline - 0.001:
            self._fail(TimeoutError())
        else:
            self.timer = self.loop.call_at(deadline, self._on_timer)

    def _fail(self, exc: BaseException) -> None:
        if self.head_fut is not None and not self.head_fut.done():
            self.head_fut.set_exception(exc)
        elif self.resp is not None:
            self.resp._finish(exc)
        self.close()

    def _free_slot(self) -> None:
        limit, self.limit = self.limit, None
        if limit is not None:
            limit.release()

    def done(self, reusable: bool) -> None:
        """The response was released: pool the connection if it can serve another request."""
        self._free_slot()
        self.parser = self.resp = self.head_fut = None
        if reusable and self.keep_alive and not self.lost:
            self.pool.put(self)
        else:
            self.close()

    def close(self) -> None:
        self.keep_alive = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class H1Pool:
    """Keep-alive connections per (host, port); at most `max_idle` idle ones each, for `idle_timeout` s."""

    def __init__(self, max_idle: int = 256, idle_timeout: float = 30.0):
        self.max_idle, self.idle_timeout = max_idle, idle_timeout
        self.idle: dict[tuple[str, int], deque[_Conn]] = {}
        self.conns: set[_Conn] = set()
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set on first use
        self._sweeper: asyncio.TimerHandle | None = None

    async def request(self, method: str, url: str, data: bytes | None = None,
                      headers: dict[str, str] | None = None, timeout: Any = None,
                      limit: ConnectionLimit | None = None, first_byte: float | None = None) -> Response:
        """`timeout` is an aiohttp.ClientTimeout (or anything with sock_connect/sock_read).
        `limit`: a slot is held from before the request is sent until its response is
        released or its connection dies (see upstream/pool.py). `first_byte`: seconds until
        the response head, separately from the read timeout between bytes."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        host, port, tail = _split(url)
        lines = [method, tail]
        for k, v in (headers or {}).items():
            lines += (k, ": ", v, "\r\n")
        if data is not None:
            lines += ("Content-Length: ", str(len(data)), "\r\n")
        lines.append("\r\n")
        text = "".join(lines)
        n = 3 + len(headers or ()) + (data is not None)  # line breaks we wrote ourselves
        if text.count("\n") != n or text.count("\r") != n:
            raise ValueError("line break in an upstream request header")  # header injection
        head = text.encode()
        connect_to = getattr(timeout, "sock_connect", None)
        read_to = getattr(timeout, "sock_read", None)
        key = (host, port)
        conn, reused = await self._checkout(key, connect_to, limit)
        try:
            return await conn.send(head, data, read_to, reused, first_byte)
        except _Stale:  # (the stale connection gave its slot back when it was lost)
            conn, _ = await self._checkout(key, connect_to, limit, fresh=True)
            return await conn.send(head, data, read_to, False, first_byte)

    async def _checkout(self, key: tuple[str, int], connect_timeout: float | None, limit: ConnectionLimit | None,
                        fresh: bool = False) -> tuple[_Conn, bool]:
        """A connection for one request (idle if one is pooled: reused=True), holding a slot of
        `limit` (queueing for one) until its response is released or it is lost."""
        if limit is not None and not limit.try_acquire():
            await limit.acquire()
        try:
            conn = None if fresh else self._idle_conn(key)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(key, connect_timeout)
                if conn.lost:  # closed by the peer before we could use it
                    raise Disconnected()
        except BaseException:
            if limit is not None:
                limit.release()
            raise
        conn.limit = limit
        return conn, reused

    def _idle_conn(self, key: tuple[str, int]) -> _Conn | None:
        idle = self.idle.get(key)
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been closed
            conn.idle = None
            if not conn.lost and self.loop.time() - conn.idle_since < self.idle_timeout:
                return conn
            conn.close()
        return None

    async def _connect(self, key: tuple[str, int], connect_timeout: float | None) -> _Conn:
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: _Conn(self, key), key[0], key[1]), connect_timeout)
        except TimeoutError:
            raise
        except OSError as e:
            raise ConnectFailed(str(e)) from None
        self.conns.add(conn)
        return conn

    def put(self, conn: _Conn) -> None:
        idle = self.idle.setdefault(conn.key, deque())
        if len(idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = self.loop.time()
        conn.idle = idle
        idle.append(conn)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self.idle_timeout / 2, self._sweep)

    def _sweep(self) -> None:
        """Close connections idle longer than idle_timeout (oldest are at the left)."""
        self._sweeper = None
        cutoff = self.loop.time() - self.idle_timeout
        for idle in self.idle.values():
            while idle and idle[0].idle_since <= cutoff:
                conn = idle.popleft()
                conn.idle = None
                conn.close()
        if any(self.idle.values()):
            self._sweeper = self.loop.call_later(self.idle_timeout / 2, self._sweep)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self.conns):
            conn.close()
        self.idle.clear()
