"""One request and its response on a connection: the ASGI `receive` and `send` of the app.

`receive` returns the body buffered by the parser (usually whole by the time the app asks,
so it does not wait), then waits for the disconnect. `send` frames the response: a head
with Content-Length waits for the body so both leave in one write; a chunked head (a
stream) waits for its first chunk until the end of this turn of the event loop, so a
stream whose first token is already there starts with one write, and one whose first token
is slow still gets its head at once. Without a length on HTTP/1.0 the body is delimited by
closing.

Beyond plain ASGI the scope's `extensions` offer (gatehouse/asgi_ext.py): the splice, for
HTTP/1.1 requests other than HEAD (a message the app sends instead of body chunks; carried
out by server/splice.py), and a disconnect watch whose callback `lost()` calls.
"""
from __future__ import annotations

import asyncio
import http
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gatehouse.asgi_ext import DISCONNECT, SPLICE, DisconnectWatch
from gatehouse.observability.safe import describe
from gatehouse.server.splice import splice_response

if TYPE_CHECKING:
    from gatehouse.server.protocol import H1Protocol

log = logging.getLogger("gatehouse.server")

_BAD_NAME = re.compile(b'[\x00-\x20\x7f()<>@,;:\\[\\]={}\\\\"/?]')
_BAD_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
_good_names: set[bytes] = set()  # response header names that passed _BAD_NAME (bounded)
_GOOD_NAMES_MAX = 512
_NO_BODY = frozenset((204, 304))
_NONE, _LENGTH, _CHUNKED, _CLOSE = range(4)  # how a response body is framed


def _status_line(code: int) -> bytes:
    try:
        phrase = http.HTTPStatus(code).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %b\r\n" % (code, phrase)


STATUS_LINES = {code: _status_line(code) for code in range(100, 600)}
_DISCONNECT = "http.disconnect"
_INTERNAL_BODY = b'{"error": {"message": "Internal server error.", "type": "server_error", "code": "internal"}}'
_INTERNAL_ERROR = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n"
                   b"content-length: %d\r\nconnection: close\r\n\r\n%b" % (len(_INTERNAL_BODY), _INTERNAL_BODY))


_SPLICE_OFFERED: dict[str, Any] = {}  # the extension takes no parameters (shared: nobody writes to it)


class ClientWatch:
    """An asgi_ext.DisconnectWatch: the app sets `callback` while it waits on something other than
    `receive` (an upstream call; api/http.HangUp cancels the work)."""

    __slots__ = ("gone", "callback")

    def __init__(self) -> None:
        self.gone = False
        self.callback: Callable[[], None] | None = None


class Cycle:
    __slots__ = ("conn", "transport", "scope", "body", "buffered", "more_body", "final_read", "waiter",
                 "disconnected", "keep_alive", "expect_continue", "started", "complete", "frame",
                 "remaining", "head", "head_only", "watch")

    def __init__(self, conn: H1Protocol, scope: dict[str, Any], keep_alive: bool, expect_continue: bool):
        self.conn = conn
        self.transport = conn.transport
        self.scope = scope
        self.body: list[bytes] = []
        self.buffered = 0
        self.more_body = True  # the parser has not seen the end of the request body yet
        self.final_read = False  # the app has received the last body message
        self.waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.started = self.complete = False
        self.frame = _NONE
        self.remaining = 0  # Content-Length bytes still to send
        self.head: bytes | None = None  # a head held back to leave with the first body bytes
        self.head_only = scope["method"] == "HEAD"
        # (the watch refers to nothing: no reference cycle through the scope)
        self.watch = ClientWatch()
        watch: dict[str, DisconnectWatch] = {"watch": self.watch}
        scope["extensions"] = {DISCONNECT: watch} if self.head_only or scope["http_version"] != "1.1" \
            else {SPLICE: _SPLICE_OFFERED, DISCONNECT: watch}

    # -- fed by the protocol ---------------------------------------------------------------------
    def lost(self) -> None:
        """The client's connection is gone before this response completed."""
        self.disconnected = True
        self.wake()
        watch = self.watch
        watch.gone = True
        callback, watch.callback = watch.callback, None
        if callback is not None:
            callback()

    def wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    # -- the app's side ------------------------------------------------------------------------
    async def run(self, app: Any) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            self.transport.close()
            raise
        except Exception as e:  # the app renders its own errors; this is a bug in it
            log.error("unhandled error in the ASGI application: %s", describe(e))
            if not self.started and not self.disconnected:
                self.keep_alive = False
                self.transport.write(_INTERNAL_ERROR)
                self._finish()
            else:
                self.transport.close()
        else:
            if not self.complete and not self.disconnected:
                log.error("the ASGI application returned without completing its response")
                self.transport.close()
        finally:
            if not self.complete:
                self.complete = True
                self.conn.cycle_done(self)

    async def receive(self) -> dict[str, Any]:
        if self.expect_continue:
            self.expect_continue = False
            if self.more_body and not self.started and not self.transport.is_closing():
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        # wait while there is nothing to hand over: no body buffered yet, or the body all read
        while not (self.disconnected or self.complete) and (self.final_read or (not self.body and self.more_body)):
            self.conn.want_body(self)
            self.waiter = self.conn.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        if self.disconnected or self.complete:
            return {"type": _DISCONNECT}
        body = self.body
        data = body[0] if len(body) == 1 else b"".join(body)
        self.body = []
        self.buffered = 0
        if not self.more_body:
            self.final_read = True
        return {"type": "http.request", "body": data, "more_body": self.more_body}

    async def send(self, message: dict[str, Any]) -> None:
        conn = self.conn
        if conn.write_paused and not self.disconnected:
            await conn.drain()
        if self.disconnected:
            if message["type"] == SPLICE:  # the app must learn it; and the source be released
                message["source"].release()
                raise ConnectionResetError("the client closed the connection")
            return
        if not self.started:
            if message["type"] != "http.response.start":
                raise RuntimeError(f"expected 'http.response.start', got '{message['type']}'")
            self._start(message["status"], message.get("headers") or ())
        elif not self.complete:
            if message["type"] != "http.response.body":
                if message["type"] == SPLICE:
                    await splice_response(self, message)
                    return
                raise RuntimeError(f"expected 'http.response.body', got '{message['type']}'")
            self._body(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(f"'{message['type']}' sent after the response completed")

    # -- framing -------------------------------------------------------------------------------
    def _start(self, status: int, headers: Any) -> None:
        parts = [STATUS_LINES.get(status) or _status_line(status)]
        length: int | None = None
        closing = False
        default = self.conn.default_headers
        for name, value in [*default, *headers] if default else headers:
            if name not in _good_names:  # a gateway sends few distinct names: each is checked once
                if _BAD_NAME.search(name):
                    raise RuntimeError("invalid character in a response header")
                if len(_good_names) < _GOOD_NAMES_MAX:
                    _good_names.add(name)
            if _BAD_VALUE.search(value):
                raise RuntimeError("invalid character in a response header")
            lower = name.lower()
            if lower == b"content-length":
                length = int(value)
            elif lower == b"transfer-encoding":
                continue  # framing is ours
            elif lower == b"connection" and b"close" in value.lower():
                closing = True
            parts += (name, b": ", value, b"\r\n")
        if closing:
            self.keep_alive = False
        elif not self.keep_alive:
            parts.append(b"connection: close\r\n")
        if self.head_only or status in _NO_BODY or status < 200:
            self.frame = _NONE
        elif length is not None:
            self.frame, self.remaining = _LENGTH, length
        elif self.scope["http_version"] == "1.1":
            self.frame = _CHUNKED
            parts.append(b"transfer-encoding: chunked\r\n")
        else:  # an HTTP/1.0 client: the end of the body is the end of the connection
            self.frame = _CLOSE
            if self.keep_alive:
                self.keep_alive = False
                parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        head = b"".join(parts)
        self.started = True
        self.expect_continue = False
        if self.frame == _LENGTH and length:
            self.head = head  # sent with the body: one write, one syscall
        elif self.frame == _CHUNKED:
            self.head = head  # with the first chunk if it comes in this turn, else on its own
            self.conn.loop.call_soon(self.flush_head)
        else:
            self.transport.write(head)

    def flush_head(self) -> None:
        head = self.head
        if head is not None:  # (not already taken by the first chunk)
            self.head = None
            if not self.transport.is_closing():
                self.transport.write(head)

    def _body(self, body: bytes, more: bool) -> None:
        frame = self.frame
        if frame == _CHUNKED:
            if body:
                out = b"%x\r\n%b\r\n" % (len(body), body) if more else b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
            else:
                out = b"" if more else b"0\r\n\r\n"
        elif frame == _LENGTH:
            if len(body) > self.remaining:
                raise RuntimeError("response body longer than its Content-Length")
            self.remaining -= len(body)
            out = body
        else:
            out = body if frame == _CLOSE else b""
        if self.head is not None:
            out, self.head = self.head + out, None
        if out:
            self.transport.write(out)
        if not more:
            if self.remaining:
                raise RuntimeError("response body shorter than its Content-Length")
            self._finish()

    def _finish(self) -> None:
        self.complete = True
        if not self.keep_alive:
            self.conn.close_after(self)
        self.wake()
        self.conn.cycle_done(self)

    # -- for server/splice: body bytes straight to the transport -------------------------------
    def chunked_open(self) -> bool:
        """The head is sent or held (`take_head`), the body is chunked and not finished: a raw
        chunk may be written."""
        return self.frame == _CHUNKED and self.started and not self.complete

    def unchunked_open(self) -> bool:
        """Started, not finished, and framed without chunks or a length: `write_unchunked`."""
        return (self.frame == _CLOSE or self.frame == _NONE) and self.started and not self.complete

    def write_unchunked(self, data: bytes) -> None:
        self._body(data, True)

    def take_head(self) -> bytes:
        """The held head, if it has not left yet, for the writer to put before its chunk."""
        head, self.head = self.head, None
        return head or b""

    @property
    def write_paused(self) -> bool:
        return self.conn.write_paused

    async def drain(self) -> None:
        await self.conn.drain()
