"""Responses API replies relayed untouched from a deployment that speaks Responses itself
(`responses_api: true` on an openai provider): usage is read from the body, or from the
stream's terminal event (`response.completed`, `response.incomplete`, `response.failed`),
and the upstream's model id is put back to the public name.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec

from gatehouse.types import Usage
from gatehouse.upstream.sse import split_frames
from gatehouse.wire.common import FrameCountingTally
from gatehouse.wire.model_swap import ModelSwap

TERMINAL = (b"response.completed", b"response.incomplete", b"response.failed")


class _InputDetails(msgspec.Struct):
    cached_tokens: int | None = 0


class _OutputDetails(msgspec.Struct):
    reasoning_tokens: int | None = 0


class _Usage(msgspec.Struct):
    input_tokens: int | None = 0
    output_tokens: int | None = 0
    input_tokens_details: _InputDetails | None = None
    output_tokens_details: _OutputDetails | None = None

    def canonical(self) -> Usage:
        return Usage(input_tokens=self.input_tokens or 0, output_tokens=self.output_tokens or 0,
                     cache_read_tokens=(self.input_tokens_details.cached_tokens or 0)
                     if self.input_tokens_details else 0,
                     reasoning_tokens=(self.output_tokens_details.reasoning_tokens or 0)
                     if self.output_tokens_details else 0)


class _Incomplete(msgspec.Struct):
    reason: str | None = None


class _Response(msgspec.Struct):
    usage: _Usage | None = None
    status: str | None = None
    incomplete_details: _Incomplete | None = None

    def finish(self) -> str | None:
        """Why it ended (traces): the reason it is incomplete, else its status."""
        d = self.incomplete_details
        return d.reason if d is not None and d.reason else self.status


class _Event(msgspec.Struct):
    type: str = ""
    response: _Response | None = None


_response_decoder = msgspec.json.Decoder(_Response)
_event_decoder = msgspec.json.Decoder(_Event)


def body_usage(raw: bytes) -> Usage | None:
    """The usage of a non-streamed response object (None when it has none or is not JSON)."""
    try:
        usage = _response_decoder.decode(raw).usage
    except msgspec.DecodeError:
        return None
    return usage.canonical() if usage is not None else None


def body_finish(raw: bytes) -> str | None:
    """Why a non-streamed response object ended (None when it does not say or is not JSON)."""
    try:
        return _response_decoder.decode(raw).finish()
    except msgspec.DecodeError:
        return None


class ResponsesRelay(FrameCountingTally):
    """Relay a Responses SSE stream byte for byte; `usage` and `finished` come from its
    terminal event. Frames without one pass through unparsed."""

    def __init__(self, model_swap: ModelSwap | None = None):
        self.swap = model_swap.apply if model_swap is not None else None
        self.usage: Usage | None = None
        self.finished = False
        self.finish_reason: str | None = None  # (traces) completed, failed, or why it is incomplete
        self.frames = 0  # frames relayed: ~one token each, the estimate if the stream is cut
        self._buf = b""

    async def relay(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for data in chunks:
            out = self.feed(data)
            if out:
                yield out
        out = self.flush()
        if out:
            yield out


    def feed(self, data: bytes) -> bytes:
        if not self._buf and data[-2:] == b"\n\n" and not any(t in data for t in TERMINAL):
            self.frames += data.count(b"\n\n")
            return data if self.swap is None else self.swap(data)
        buf = self._buf + data if self._buf else data
        if b"\n\n" not in buf and b"\r\n\r\n" not in buf:
            self._buf = buf
            return b""
        frames, self._buf = split_frames(buf)
        return self._relayed(frames)

    def flush(self) -> bytes:
        rest, self._buf = self._buf.strip(), b""
        return self._relayed([rest]) if rest else b""

    def _relayed(self, frames: list[bytes]) -> bytes:
        frames = [f for f in frames if f.strip()]
        for frame in frames:
            self.frames += 1
            if any(t in frame for t in TERMINAL):
                self._inspect(frame)
        out = b"".join(f + b"\n\n" for f in frames)
        return out if self.swap is None else self.swap(out)

    def _inspect(self, frame: bytes) -> None:
        for line in frame.splitlines():
            if not line.startswith(b"data:"):
                continue
            try:
                event: Any = _event_decoder.decode(line[5:].strip())
            except msgspec.DecodeError:
                continue
            if event.type.encode() in TERMINAL:
                self.finished = True
                r = event.response
                self.finish_reason = (r.finish() if r is not None else None) or event.type.rpartition(".")[2]
                if r is not None and r.usage is not None:
                    self.usage = r.usage.canonical()
