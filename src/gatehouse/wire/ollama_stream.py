"""Ollama NDJSON streams from an upstream: decoded into canonical events, or relayed untouched.

Each line is a whole JSON object: content deltas with `"done": false`, then a final line
with `"done": true`, the done_reason and the token counts. Tool calls arrive complete in
one line. An `{"error": ...}` line ends a failed stream.
"""
from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec

from gatehouse.errors import UpstreamError, UpstreamStatus
from gatehouse.types import (
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from gatehouse.upstream.ndjson import iter_lines
from gatehouse.wire import errors_ollama
from gatehouse.wire.common import FrameCountingTally
from gatehouse.wire.model_swap import ModelSwap
from gatehouse.wire.ollama import response_decoder, stop_reason, tool_call_parts


def _malformed(model: str) -> UpstreamError:
    return UpstreamError(f"The upstream for model '{model}' sent a malformed stream line.", code="upstream_malformed")


async def decode_stream(chunks: AsyncIterator[bytes], response_id: str, model: str) -> AsyncIterator[StreamEvent]:
    started = False
    tools = 0
    async for line in iter_lines(chunks):
        try:
            resp = response_decoder.decode(line)
        except (msgspec.DecodeError, RecursionError):
            raise _malformed(model) from None
        if resp.error is not None:
            raise stream_failure(line, model)
        if not started:
            started = True
            yield StreamStart(response_id, model)
        msg = resp.message
        thinking = msg.thinking if msg else resp.thinking
        text = msg.content if msg else resp.response
        if thinking:
            yield ThinkingDelta(thinking)
        if text:
            yield TextDelta(text)
        for call in tool_call_parts(msg.tool_calls if msg else None, tools):
            yield ToolCallStart(tools, call.id, call.name)
            yield ToolCallDelta(tools, call.arguments)
            tools += 1
        if resp.done:
            yield StreamEnd(stop_reason(resp.done_reason, tools > 0), resp.usage())
            return
    if not started:
        raise UpstreamError(f"The upstream for model '{model}' ended the stream without a response.")
    raise UpstreamError(f"The upstream for model '{model}' ended the stream early.", code="upstream_disconnected")


def stream_failure(line: bytes, model: str) -> UpstreamStatus:
    """An upstream's `{"error": ...}` line as a gateway error (wire/errors_ollama.py)."""
    return errors_ollama.stream_failure(line, model)


def _names_error(line: bytes) -> bool:
    try:
        return response_decoder.decode(line).error is not None
    except msgspec.DecodeError:
        return True  # an unreadable line naming an error is not relayed as it came


_DONE_MARKERS = (b'"done":true', b'"done": true')


class NDJSONRelay(FrameCountingTally):
    """Relay an Ollama NDJSON stream line by line, reading the usage from the final line. An
    `{"error": ...}` line is replaced by our own; with a `model_swap`, lines carry the public name."""

    def __init__(self, public_model: str = "", model_swap: ModelSwap | None = None) -> None:
        self.public_model = public_model
        self.swap = model_swap.apply if model_swap is not None else None
        self.usage: Usage | None = None
        self.finished = False
        self.finish_reason: str | None = None  # (traces) the final line's done_reason
        self.frames = 0  # content lines relayed: ~one token each, the estimate if no final line

    async def relay(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for line in iter_lines(chunks):
            if any(marker in line for marker in _DONE_MARKERS):
                try:
                    final = response_decoder.decode(line)
                except (msgspec.DecodeError, RecursionError):
                    pass
                else:
                    self.usage = final.usage()
                    self.finish_reason = final.done_reason
                    self.finished = True
            elif b'"error"' in line and _names_error(line):
                line = errors_ollama.stream_line(stream_failure(line, self.public_model).message)
            else:
                self.frames += 1
            yield line + b"\n" if self.swap is None else self.swap(line) + b"\n"

