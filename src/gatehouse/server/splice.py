"""The splice (asgi_ext.SPLICE), carried out by the server: a same-dialect stream relayed from the
upstream socket to the client socket, chunk by chunk, inside the upstream connection's data
callback.

Why: relaying 100 streams of a chunk every 5 ms is 20,000 chunks a second. Through async
iterators each chunk woke a task and passed five generators and three `send` coroutines
(~45 us of CPU each): the gateway's core was 90% busy relaying, and a new stream's first
token queued behind that work for milliseconds. Here a chunk costs the parser callback,
the frame filter (usage sniffing, see wire/openai_stream.PassthroughRelay) and one
`transport.write`; the request's task sleeps until the body ends, the client cannot take
more (then it awaits the drain with the upstream paused), or the client goes away.

The server offers it (in `scope["extensions"]`, see cycle.py) to HTTP/1.1 requests other than
HEAD, whose streamed responses are chunked; the app sends the message after the response start
when its upstream response is a `SpliceSource` (upstream/h1.py), and otherwise iterates the
chunks as any ASGI app would.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from gatehouse.asgi_ext import End, Fail, Feed, FirstByte, SpliceSource

if TYPE_CHECKING:
    from gatehouse.server.cycle import Cycle


class RawWriter:
    """Chunked-encoding body writes straight to the client's transport, for a response whose
    start went through the cycle. The cycle still writes the terminating chunk."""

    __slots__ = ("transport", "cycle", "first_byte", "first")

    def __init__(self, cycle: Cycle, first_byte: FirstByte):
        self.transport = cycle.transport
        self.cycle = cycle
        self.first_byte = first_byte
        self.first = True

    def write(self, data: bytes) -> None:
        out = b"%x\r\n%b\r\n" % (len(data), data)
        if self.first:  # the response head may still be held back: both go in one write
            self.first = False
            self.first_byte()
            out = self.cycle.take_head() + out
        self.transport.write(out)

    @property
    def paused(self) -> bool:
        return self.cycle.write_paused


class _UnchunkedWriter(RawWriter):
    """For a response the cycle does not chunk (a close-delimited body, or none: a 204): the
    cycle frames each write. Not the fast path; it keeps such a response correct."""

    __slots__ = ()

    def write(self, data: bytes) -> None:
        if self.first:
            self.first = False
            self.first_byte()
        self.cycle.write_unchunked(data)


class _Sink:
    """Receives the upstream body in the connection's callbacks (see h1.Response.splice)."""

    __slots__ = ("writer", "feed", "source", "waiter", "ended", "error", "paused", "gone")

    def __init__(self, writer: RawWriter, feed: Feed, source: SpliceSource):
        self.writer, self.feed, self.source = writer, feed, source
        self.waiter: asyncio.Future[None] | None = None
        self.ended = self.paused = self.gone = False
        self.error: BaseException | None = None

    def data(self, chunk: bytes) -> None:
        if self.ended or self.gone:
            return
        try:
            out = self.feed(chunk)
        except Exception as e:
            self.end(e)
            return
        if not out:
            return
        writer = self.writer
        if writer.transport.is_closing():  # the client went away; the disconnect watcher follows
            self.gone = True
            self._wake()
            return
        writer.write(out)
        if writer.paused and not self.paused:  # the client reads slower than the upstream writes
            self.paused = True
            self.source.pause_reading()
            self._wake()

    def end(self, exc: BaseException | None) -> None:
        if not self.ended:
            self.ended, self.error = True, exc
            self._wake()

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)


async def splice_body(writer: RawWriter, source: SpliceSource, feed: Feed, end: End, fail: Fail) -> bytes:
    """Relay the upstream body until it ends; returns the last bytes for the client (`end()`,
    or `fail(error)` when the upstream failed). Raises ConnectionResetError when the client
    went away. The upstream connection is released either way."""
    loop = asyncio.get_running_loop()
    sink = _Sink(writer, feed, source)
    try:
        source.splice(sink)
        while not sink.ended:
            if sink.gone:
                raise ConnectionResetError("the client closed the connection")
            if sink.paused:
                await writer.cycle.drain()
                sink.paused = False
                source.resume_reading()
                continue
            sink.waiter = loop.create_future()
            try:
                await sink.waiter
            finally:
                sink.waiter = None
        if sink.gone:
            raise ConnectionResetError("the client closed the connection")
        return fail(sink.error) if sink.error is not None else end()
    finally:
        source.release()  # pooled again after a complete body, closed otherwise


async def splice_response(cycle: Cycle, message: dict[str, Any]) -> None:
    """Carry out a SPLICE message on a started response: the body, then its last bytes as one
    more chunk. The app ends the response afterwards, as after any body chunk."""
    source: SpliceSource = message["source"]
    if cycle.chunked_open():
        writer = RawWriter(cycle, message["first_byte"])
    elif cycle.unchunked_open():
        writer = _UnchunkedWriter(cycle, message["first_byte"])
    else:
        source.release()
        raise RuntimeError("a splice needs a started response without a Content-Length")
    tail = await splice_body(writer, source, message["feed"], message["end"], message["fail"])
    if tail:
        await cycle.send({"type": "http.response.body", "body": tail, "more_body": True})
