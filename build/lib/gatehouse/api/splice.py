"""Relay a same-dialect stream from the upstream socket to the client socket, chunk by chunk,
inside the upstream connection's data callback.

Why: relaying 100 streams of a chunk every 5 ms is 20,000 chunks a second. Through async
iterators each chunk woke a task and passed five generators and three `send` coroutines
(~45 us of CPU each): the gateway's core was 90% busy relaying, and a new stream's first
token queued behind that work for milliseconds. Here a chunk costs the parser callback,
the frame filter (usage sniffing, see wire/openai_stream.PassthroughRelay) and one
`transport.write`; the request's task sleeps until the body ends, the client cannot take
more (then it awaits the drain with the upstream paused), or the client goes away.

It applies when the upstream answered through the lean HTTP/1.1 client (upstream/h1.py)
and our server (server/cycle.py) framed the response as chunked: `RawWriter.of` checks
that and otherwise the caller iterates the chunks as before.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from gatehouse.server.cycle import Cycle


class RawWriter:
    """Chunked-encoding body writes straight to the client's transport, for a response whose
    start went through our server's `send` (server/cycle.Cycle.send, the bound method). The
    cycle's own `send` still writes the terminating chunk."""

    __slots__ = ("transport", "flow", "first")

    def __init__(self, transport: Any, flow: Any):
        self.transport = transport
        self.flow = flow  # has write_paused, drain() and take_head()
        self.first = True

    @staticmethod
    def of(send: Any) -> RawWriter | None:
        cycle = getattr(send, "__self__", None)
        if type(cycle) is not Cycle or not cycle.chunked_open():
            return None
        return RawWriter(cycle.transport, cycle)

    def write(self, data: bytes) -> None:
        out = b"%x\r\n%b\r\n" % (len(data), data)
        if self.first:  # the response head may still be held back: both go in one write
            self.first = False
            out = self.flow.take_head() + out
        self.transport.write(out)

    @property
    def paused(self) -> bool:
        return self.flow.write_paused


class _Sink:
    """Receives the upstream body in the connection's callbacks (see h1.Response.splice)."""

    __slots__ = ("writer", "feed", "ex", "resp", "waiter", "ended", "error", "paused", "gone")

    def __init__(self, writer: RawWriter, feed: Callable[[bytes], bytes], ex: Any, resp: Any):
        self.writer, self.feed, self.ex, self.resp = writer, feed, ex, resp
        self.waiter: asyncio.Future[None] | None = None
        self.ended = self.paused = self.gone = False
        self.error: BaseException | None = None

    def data(self, chunk: bytes) -> None:
        if self.ended or self.gone:
            return
        try:
            out = self.feed(chunk)
        except Exception as e:  # noqa: BLE001 - a filter bug ends this stream, not the connection's callback
            self.end(e)
            return
        if not out:
            return
        writer = self.writer
        if writer.transport.is_closing():  # the client went away; the disconnect watcher follows
            self.gone = True
            self._wake()
            return
        if self.ex.first_token_at is None:
            self.ex.first_token_at = time.monotonic()
        writer.write(out)
        if writer.paused and not self.paused:  # the client reads slower than the upstream writes
            self.paused = True
            self.resp.pause_reading()
            self._wake()

    def end(self, exc: BaseException | None) -> None:
        if not self.ended:
            self.ended, self.error = True, exc
            self._wake()

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)


class Splice:
    """What a stream needs to be spliced: the upstream response (h1.Response), `feed` (arrived
    bytes -> bytes for the client) and `flush` (the tail at the end) from the dialect's relay,
    `fail` (a transport error -> the error frame for the client; it also records the error on
    the exchange) and the exchange, whose first_token_at is set on the first bytes out."""

    __slots__ = ("resp", "feed", "flush", "fail", "ex")

    def __init__(self, resp: Any, feed: Callable[[bytes], bytes], flush: Callable[[], bytes],
                 fail: Callable[[BaseException], bytes], ex: Any):
        self.resp, self.feed, self.flush, self.fail, self.ex = resp, feed, flush, fail, ex


async def splice_body(writer: RawWriter, sp: Splice) -> bytes:
    """Relay the upstream body until it ends; returns the last bytes for the client (the
    flushed tail, or `fail(error)` when the upstream failed). Raises ConnectionResetError
    when the client went away. The upstream connection is released either way."""
    loop = asyncio.get_running_loop()
    resp = sp.resp
    sink = _Sink(writer, sp.feed, sp.ex, resp)
    try:
        resp.splice(sink)
        while not sink.ended:
            if sink.gone:
                raise ConnectionResetError("the client closed the connection")
            if sink.paused:
                await writer.flow.drain()
                sink.paused = False
                resp.resume_reading()
                continue
            sink.waiter = loop.create_future()
            try:
                await sink.waiter
            finally:
                sink.waiter = None
        if sink.gone:
            raise ConnectionResetError("the client closed the connection")
        return sp.fail(sink.error) if sink.error is not None else sp.flush()
    finally:
        resp.release()  # pooled again after a complete body, closed otherwise
