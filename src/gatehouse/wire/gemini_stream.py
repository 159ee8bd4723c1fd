"""Gemini streamGenerateContent (`alt=sse`) -> canonical stream events.

Every SSE event is a whole GenerateContentResponse holding the next parts; usage grows with
each event (the last one counts), and the finish reason comes with the last. Function calls
arrive complete, so each becomes a ToolCallStart followed by one ToolCallDelta.
"""
from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec

from gatehouse.errors import UpstreamError
from gatehouse.types import (
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    Usage,
)
from gatehouse.upstream.client import malformed
from gatehouse.upstream.sse import iter_events
from gatehouse.wire.errors_gemini import gemini_error
from gatehouse.wire.gemini import part_to_canonical, response_decoder, stop_reason


async def decode_stream(chunks: AsyncIterator[bytes], request_id: str, model: str) -> AsyncIterator[StreamEvent]:
    started = False
    finish: str | None = None
    blocked = False
    usage: Usage | None = None
    tools = 0
    async for ev in iter_events(chunks):
        try:
            resp = response_decoder.decode(ev.data)
        except (msgspec.DecodeError, RecursionError):
            raise malformed(model) from None
        if resp.error is not None:
            raise gemini_error(resp.error.code, resp.error, model)
        if not started:
            started = True
            yield StreamStart(resp.responseId or request_id, model)
        if resp.usageMetadata is not None:
            usage = resp.usageMetadata.canonical()
        if not resp.candidates:
            blocked = blocked or bool(resp.promptFeedback and resp.promptFeedback.blockReason)
            continue
        candidate = resp.candidates[0]
        for p in candidate.content.parts if candidate.content else ():
            part = part_to_canonical(p)
            if isinstance(part, ToolCallPart):
                yield ToolCallStart(tools, part.id, part.name)
                yield ToolCallDelta(tools, part.arguments)
                tools += 1
            elif isinstance(part, ThinkingPart):
                yield ThinkingDelta(part.text, part.signature)
            elif isinstance(part, TextPart) and part.text:
                yield TextDelta(part.text)
        if candidate.finishReason:
            finish = candidate.finishReason
    if not started:
        raise UpstreamError(f"The upstream for model '{model}' ended the stream without a response.")
    if finish is None and not blocked:
        raise UpstreamError(f"The upstream for model '{model}' ended the stream early.",
                            code="upstream_disconnected")
    yield StreamEnd(stop_reason(finish, tools > 0, blocked), usage)
