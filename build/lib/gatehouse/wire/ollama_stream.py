"""Ollama NDJSON streams from an upstream: decoded into canonical events, or relayed untouched.

Each line is a whole JSON object: content deltas with `"done": false`, then a final line
with `"done": true`, the done_reason and the token counts. Tool calls arrive complete in
one line. An `{"error": ...}` line ends a failed stream.
"""
from __future__ import annotations

from typing import AsyncIterator

import msgspec

from gatehouse.errors import UpstreamError
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
from gatehouse.wire.ollama import response_decoder, stop_reason, tool_call_parts


def _malformed(model: str) -> UpstreamError:
    return UpstreamError(f"The upstream for model '{model}' sent a malformed stream line.", code="upstream_malformed")


async def decode_stream(chunks: AsyncIterator[bytes], response_id: str, model: str) -> AsyncIterator[StreamEvent]:
    started = False
    tools = 0
    async for line in iter_lines(chunks):
        try:
            resp = response_decoder.decode(line)
        except msgspec.DecodeError:
            raise _malformed(model) from None
        if resp.error is not None:
            raise UpstreamError(f"Upstream error for model '{model}': {resp.error[:300]}")
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


_DONE_MARKERS = (b'"done":true', b'"done": true')


class NDJSONRelay:
    """Relay an Ollama NDJSON stream line by line, reading the usage from the final line."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.finished = False
        self.frames = 0  # content lines relayed: ~one token each, the estimate if no final line

    async def relay(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for line in iter_lines(chunks):
            if any(marker in line for marker in _DONE_MARKERS):
                try:
                    final = response_decoder.decode(line)
                except msgspec.DecodeError:
                    pass
                else:
                    self.usage = final.usage()
                    self.finished = True
            else:
                self.frames += 1
            yield line + b"\n"
