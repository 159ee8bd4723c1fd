"""The connection: httptools parser callbacks, keep-alive, pipelining, flow control.

What uvicorn's protocol did per request and this one does per connection or not at all:
- keep-alive: one timer per connection that re-arms itself from the last activity, not a
  `call_later` armed and cancelled around every request;
- the waits: a future made only when the app actually has to wait (the body is usually
  whole before the app asks for it), not an asyncio.Event per request;
- the URL: split at `?` directly for origin-form targets; httptools.parse_url only for the
  rare absolute-form one.
Limits it adds: a request line plus headers over MAX_HEAD_BYTES gets 431, not unbounded
memory; the head must arrive within `header_timeout` and the body within `body_timeout` of its
head (else 408 and a close), and bad framing (e.g. broken chunked encoding) gets 400 and a
close. Those deadlines ride on the same per-connection timer, armed only when a request is
still partly read after a read (a request that arrives whole costs one attribute test).
A response that closes the connection while the client is still sending its body (a 413 to a
client that writes the whole body before reading) is followed by a lingering close, as
nginx does: the write side is shut, the rest of the body is read and dropped (bounded by the
body deadline and LINGER_MAX_BYTES), then the connection closes - so the client reads the
answer instead of a connection reset.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Any
from urllib.parse import unquote

import httptools

from gatehouse.server.cycle import Cycle

MAX_HEAD_BYTES = 64 * 1024  # request line and headers
HIGH_WATER = 64 * 1024  # request body buffered before reading pauses until the app takes it
LINGER_MAX_BYTES = 64 * 1024 * 1024  # request body read and dropped after an early answer, at most
TLS_CLOSE_WAIT_SECONDS = 1.0  # an idle TLS connection asked to close at shutdown: its close_notify, at most
_IDLE, _HEAD, _BODY = range(3)  # what the parser is reading


class _HeadTooLarge(Exception):
    pass


def _plain_error(status: bytes, message: str) -> bytes:
    body = b'{"error": {"message": "%b", "type": "invalid_request_error", "code": null}}' % message.encode()
    return (b"HTTP/1.1 %b\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%b" % (status, len(body), body))


_BAD_REQUEST = _plain_error(b"400 Bad Request", "Malformed HTTP request.")
_HEAD_TOO_LARGE = _plain_error(b"431 Request Header Fields Too Large",
                               f"The request line and headers are larger than {MAX_HEAD_BYTES} bytes.")
_TIMEOUT = _plain_error(b"408 Request Timeout", "The request did not arrive in time.")


class H1Protocol(asyncio.Protocol):
    """uvicorn's `http` protocol interface: built with (config, server_state, app_state)."""

    header_timeout = 10.0  # seconds from a request's first byte to the end of its head
    body_timeout = 30.0  # seconds from the end of the head to the end of the body

    @classmethod
    def configured(cls, header_timeout: float, body_timeout: float) -> type[H1Protocol]:
        """The protocol class with the server config's read deadlines, for uvicorn's `http`."""
        return type(cls.__name__, (cls,), {"header_timeout": header_timeout, "body_timeout": body_timeout})

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None):
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.connections: set[Any] = server_state.connections
        self.tasks: set[asyncio.Task[None]] = server_state.tasks
        self.default_headers: list[tuple[bytes, bytes]] = server_state.default_headers
        self.app_state = app_state
        self.root_path: str = config.root_path
        self.asgi = {"version": config.asgi_version, "spec_version": "2.3"}
        self.keep_alive_timeout: float = config.timeout_keep_alive
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.cycle: Cycle | None = None  # the request the parser is on
        self.active: Cycle | None = None  # the request whose response is being written
        self.waiting: deque[Cycle] = deque()  # pipelined requests behind it
        self.read_paused = self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.last_active = 0.0
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.expect_continue = False
        self.reading = _IDLE  # the parser's place in the current request
        self.began = 0.0  # when that part of the request began to arrive
        self.deadline = 0.0  # the read deadline the timer is armed for (0: none)
        self.lingering = False  # answered and closing: the rest of the request body is dropped
        self.lingered = 0

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)
        sock = transport.get_extra_info("sockname")
        peer = transport.get_extra_info("peername")
        self.server = (str(sock[0]), int(sock[1])) if isinstance(sock, tuple) else None
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.scheme = "https" if transport.get_extra_info("sslcontext") else "http"
        self.last_active = self.loop.time()
        self._timer = self.loop.call_later(self.keep_alive_timeout, self._idle_check)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for cycle in (self.active, *self.waiting):
            if cycle is not None and not cycle.complete:
                cycle.lost()
        self.waiting.clear()
        if self.active is None:
            self.cycle = None  # the cycle refers back to this protocol: let refcounting free both
        self.resume_writing()  # so nothing waits forever on a drain

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # refused or shutting down: nothing more is read
        self.last_active = self.loop.time()
        if self.lingering:
            self.lingered += len(data)
            if self.lingered > LINGER_MAX_BYTES:
                self.transport.close()
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no WebSocket or h2c here: the request is served as plain HTTP/1.1
        except httptools.HttpParserError as e:
            self._reject(_HEAD_TOO_LARGE if isinstance(e.__context__, _HeadTooLarge) else _BAD_REQUEST)
            return
        if self.reading:  # a request is partly here: its deadline must be armed
            self._arm_deadline()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        d = self._drain
        if d is not None:
            self._drain = None
            if not d.done():
                d.set_result(None)

    async def drain(self) -> None:
        if self.write_paused:
            if self._drain is None:
                self._drain = self.loop.create_future()
            await asyncio.shield(self._drain)

    # -- parser callbacks ----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.reading, self.began = _HEAD, self.last_active
        self.url = b""
        self.headers = []
        self.head_bytes = 0
        self.expect_continue = False

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_bytes += len(url)
        if self.head_bytes > MAX_HEAD_BYTES:
            raise _HeadTooLarge()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > MAX_HEAD_BYTES:
            raise _HeadTooLarge()
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.reading, self.began = _BODY, self.last_active
        if self.lingering:
            return  # (a request pipelined behind the refused one: it is not served)
        parser = self.parser
        url = self.url
        if url[:1] == b"/":
            raw_path, _, query = url.partition(b"?")
        else:  # absolute-form (a proxy-style request line) or `*`
            parsed = httptools.parse_url(url)
            raw_path, query = parsed.path or b"/", parsed.query or b""
        path = raw_path.decode("ascii")
        if "%" in path:
            path = unquote(path)
        version = parser.get_http_version()
        scope = {
            "type": "http", "asgi": self.asgi, "http_version": version, "server": self.server,
            "client": self.client, "scheme": self.scheme, "method": parser.get_method().decode("ascii"),
            "root_path": self.root_path, "path": self.root_path + path if self.root_path else path,
            "raw_path": raw_path, "query_string": query, "headers": self.headers,
            "state": self.app_state.copy(),
        }
        keep_alive = version != "1.0" and parser.should_keep_alive()
        cycle = self.cycle = Cycle(self, scope, keep_alive, self.expect_continue)
        if self.active is None:
            self._start(cycle)
        else:  # pipelined: it runs when the one before has answered
            self.waiting.append(cycle)
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle is None or cycle.complete:
            return  # the app answered without reading it all: the rest is read and dropped
        cycle.body.append(body)
        cycle.buffered += len(body)
        if cycle.buffered > HIGH_WATER:
            self._pause_reading()
        cycle.wake()

    def on_message_complete(self) -> None:
        self.reading = _IDLE
        if self.lingering:
            self.transport.close()
            return
        cycle = self.cycle
        if cycle is not None:
            cycle.more_body = False
            cycle.wake()

    # -- requests ------------------------------------------------------------------------------
    def _start(self, cycle: Cycle) -> None:
        self.active = cycle
        task = self.loop.create_task(cycle.run(self.app))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def want_body(self, cycle: Cycle) -> None:
        """The app waits for body bytes: reading resumes if the buffer paused it."""
        if self.read_paused and cycle is self.active and not self.waiting:
            self.read_paused = False
            self.transport.resume_reading()

    def cycle_done(self, cycle: Cycle) -> None:
        self.server_state.total_requests += 1
        self.last_active = self.loop.time()
        if cycle is not self.active:
            return
        self.active = None
        if self.transport.is_closing():
            self.cycle = None
            return
        if self.waiting:
            self._start(self.waiting.popleft())
        if not self.waiting and self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def _pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def close_after(self, cycle: Cycle) -> None:
        """The response that ends the connection is written. If the client may still be sending
        the request body, closing now would reset the connection and the client could lose the
        answer: shut the write side, read and drop the rest of the body, then close (when it
        ends, at the body deadline, or past LINGER_MAX_BYTES)."""
        if self.reading == _BODY and cycle is self.cycle and cycle.more_body and not self.lingering:
            self.lingering = True
            if self.transport.can_write_eof():
                self.transport.write_eof()
        else:
            self.transport.close()

    def _reject(self, response: bytes) -> None:
        """A request that is malformed or did not arrive in time: answered (unless something
        already answered it) and closed. If the response to an earlier request is still being
        written (pipelining), the connection closes when that is done instead."""
        active = self.active
        cycle = self.cycle if self.reading == _BODY and self.cycle is not None and self.cycle.more_body else None
        self.reading, self.deadline = _IDLE, 0.0
        if self.lingering or (cycle is not None and cycle.complete):
            self.transport.close()  # answered already (e.g. a 413 before the body was read)
            return
        if active is not None and cycle is not active:
            active.keep_alive = False
            self.waiting.clear()
            self._pause_reading()
            return
        if active is not None:  # the app has this request and waits for its body: it never comes
            active.keep_alive = False
            active.disconnected = True
            active.wake()
            if active.started:
                self.transport.close()
                return
        self.transport.write(response)
        self.transport.close()

    def _arm_deadline(self) -> None:
        deadline = self.began + (self.header_timeout if self.reading == _HEAD else self.body_timeout)
        if deadline != self.deadline:
            self.deadline = deadline
            timer = self._timer
            if timer is None or timer.when() > deadline:
                if timer is not None:
                    timer.cancel()
                self._timer = self.loop.call_at(deadline, self._idle_check)

    def _idle_check(self) -> None:
        """The connection's one timer: idle keep-alive connections close, and a request that is
        partly read past its deadline gets 408 (not while the server itself paused reading)."""
        self._timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        if self.reading and self.deadline and now >= self.deadline:
            if not self.read_paused or self.lingering:
                self._reject(_TIMEOUT)
                return
            self.began, self.deadline = now, 0.0  # the app has not taken the body yet: not the client's delay
            self._arm_deadline()
            return
        idle = now - self.last_active
        if self.active is None and not self.waiting and not self.reading and idle >= self.keep_alive_timeout:
            self.transport.close()
            return
        delay = self.keep_alive_timeout - idle if self.active is None else self.keep_alive_timeout
        when = now + max(delay, 0.05)
        if self.reading and self.deadline:
            when = min(when, self.deadline)
        self._timer = self.loop.call_at(when, self._idle_check)

    def _drop_if_open(self) -> None:
        if self in self.connections:
            self.transport.abort()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: close when idle, else after the current response."""
        self.waiting.clear()
        if self.active is None:
            self.transport.close()
            if self.scheme == "https":  # close() sent close_notify and waits for the client's, which
                # an idle keep-alive client may never send: drop it after a moment, nothing is cut
                self.loop.call_later(TLS_CLOSE_WAIT_SECONDS, self._drop_if_open)
        else:
            self.active.keep_alive = False
