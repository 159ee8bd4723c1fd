"""Bedrock ConverseStream events (decoded from AWS event-stream frames) -> canonical stream events.

A ConverseStream body is messageStart, per content block an optional contentBlockStart (tool
use), contentBlockDeltas and a contentBlockStop, then messageStop (the stop reason) and
metadata (usage). An exception frame may arrive at any point instead of the next event;
it becomes the matching gateway error, so the client sees a dialect-shaped error in-stream.
"""
from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
from msgspec import Struct

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
from gatehouse.upstream.client import malformed
from gatehouse.upstream.eventstream import iter_messages
from gatehouse.wire.bedrock import STOP_REASONS, BRUsage
from gatehouse.wire.errors_bedrock import stream_error


class _ToolStart(Struct):
    toolUseId: str = ""
    name: str = ""


class _Start(Struct):
    toolUse: _ToolStart | None = None


class _BlockStart(Struct):
    start: _Start | None = None
    contentBlockIndex: int = 0


class _ToolDelta(Struct):
    input: str = ""


class _ReasoningDelta(Struct):
    text: str | None = None
    signature: str | None = None
    redactedContent: str | None = None


class _Delta(Struct):
    text: str | None = None
    toolUse: _ToolDelta | None = None
    reasoningContent: _ReasoningDelta | None = None


class _BlockDelta(Struct):
    delta: _Delta | None = None
    contentBlockIndex: int = 0


class _MessageStop(Struct):
    stopReason: str = "end_turn"


class _Metadata(Struct):
    usage: BRUsage | None = None


_block_start = msgspec.json.Decoder(_BlockStart)
_block_delta = msgspec.json.Decoder(_BlockDelta)
_message_stop = msgspec.json.Decoder(_MessageStop)
_metadata = msgspec.json.Decoder(_Metadata)


async def decode_stream(chunks: AsyncIterator[bytes], response_id: str, model: str,
                        permission: str) -> AsyncIterator[StreamEvent]:
    started = False
    tools: dict[int, int] = {}  # contentBlockIndex -> index among this response's tool calls
    stop: str | None = None
    usage: Usage | None = None
    async for msg in iter_messages(chunks, model):
        if msg.message_type != "event":
            raise stream_error(msg, model, permission)
        if not started:
            started = True
            yield StreamStart(response_id, model)
        kind = msg.event_type
        try:
            if kind == "contentBlockDelta":
                ev = _block_delta.decode(msg.payload)
                d = ev.delta
                if d is None:
                    continue
                if d.text is not None:
                    yield TextDelta(d.text)
                elif d.toolUse is not None:
                    index = tools.get(ev.contentBlockIndex)
                    if index is None:  # a delta without its start: name unknown, keep the arguments
                        index = tools[ev.contentBlockIndex] = len(tools)
                        yield ToolCallStart(index, f"tooluse_{index}", "")
                    yield ToolCallDelta(index, d.toolUse.input)
                elif d.reasoningContent is not None:
                    r = d.reasoningContent
                    yield ThinkingDelta(r.text or "", r.signature, r.redactedContent)
            elif kind == "contentBlockStart":
                ev_start = _block_start.decode(msg.payload)
                use = ev_start.start.toolUse if ev_start.start else None
                if use is not None:
                    index = tools[ev_start.contentBlockIndex] = len(tools)
                    yield ToolCallStart(index, use.toolUseId, use.name)
            elif kind == "messageStop":
                stop = _message_stop.decode(msg.payload).stopReason
            elif kind == "metadata":
                meta = _metadata.decode(msg.payload)
                if meta.usage is not None:
                    usage = meta.usage.canonical()
        except (msgspec.DecodeError, RecursionError):
            raise malformed(model) from None
    if not started:
        raise UpstreamError(f"The upstream for model '{model}' ended the stream without a response.")
    if stop is None:
        raise UpstreamError(f"The upstream for model '{model}' ended the stream early.",
                            code="upstream_disconnected")
    yield StreamEnd(STOP_REASONS.get(stop, "end"), usage)
