"""A stored answer is one canonical ChatResponse, whatever dialect or stream flag stored it.

`Collector` reads a translated stream as it is relayed (the events pass through untouched) and
builds that answer from the events once the stream has ended properly; `replay` turns a stored
answer back into canonical events, so a hit streams through the client's own dialect encoder
(gateway/relay.py, with the output guardrails) exactly like an upstream's stream would.
"""
from __future__ import annotations

from collections.abc import AsyncIterator

from gatehouse.types import (
    ChatResponse,
    KeepAlive,
    Part,
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

# Text replays in deltas of about this many characters: clients render progressively, and
# a long answer is not one huge frame.
CHUNK_CHARS = 96

# Finishes that are never stored: a filtered or failed answer is not the model's answer.
UNSTORABLE = frozenset({"content_filter", "error"})


class Collector:
    """What a relayed stream said, in order, and how it ended."""

    __slots__ = ("id", "model", "parts", "tools", "end", "odd")

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.parts: list[Part] = []
        self.tools: dict[int, ToolCallPart] = {}
        self.end: StreamEnd | None = None
        self.odd = False  # an event this cannot store faithfully: the answer is not stored

    def see(self, ev: StreamEvent) -> None:
        parts = self.parts
        if isinstance(ev, TextDelta):
            last = parts[-1] if parts else None
            if isinstance(last, TextPart):
                last.text += ev.text
            elif ev.text:
                parts.append(TextPart(ev.text))
        elif isinstance(ev, ThinkingDelta):
            if ev.redacted_data is not None:
                parts.append(ThinkingPart(redacted_data=ev.redacted_data))
                return
            last = parts[-1] if parts else None
            if not isinstance(last, ThinkingPart) or last.redacted_data is not None or last.signature:
                last = ThinkingPart()
                parts.append(last)
            last.text += ev.text
            if ev.signature:
                last.signature = ev.signature
        elif isinstance(ev, ToolCallStart):
            call = ToolCallPart(ev.id, ev.name, "")
            self.tools[ev.index] = call
            parts.append(call)
        elif isinstance(ev, ToolCallDelta):
            open_call = self.tools.get(ev.index)
            if open_call is None:
                self.odd = True
            else:
                open_call.arguments += ev.arguments
        elif isinstance(ev, StreamStart):
            self.id, self.model = ev.id, ev.model
        elif isinstance(ev, StreamEnd):
            self.end = ev
        elif not isinstance(ev, KeepAlive):
            self.odd = True

    def answer(self, usage: Usage | None) -> ChatResponse | None:
        """The complete answer; None when the stream did not end properly or ended filtered."""
        end = self.end
        if end is None or self.odd or end.stop_reason in UNSTORABLE:
            return None
        for call in self.tools.values():
            call.arguments = call.arguments or "{}"
        return ChatResponse(self.id, self.model, self.parts, end.stop_reason, end.stop_sequence,
                            usage or end.usage or Usage())


async def collecting(first: StreamEvent, events: AsyncIterator[StreamEvent],
                     into: Collector) -> AsyncIterator[StreamEvent]:
    """`events` unchanged, each one seen by `into` on its way out."""
    into.see(first)
    try:
        async for ev in events:
            into.see(ev)
            yield ev
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def replay(answer: ChatResponse) -> tuple[StreamStart, AsyncIterator[StreamEvent]]:
    """A stored answer as a stream: its first event and the rest."""
    u = answer.usage
    start = StreamStart(answer.id, answer.model, Usage(input_tokens=u.input_tokens,
                                                       cache_read_tokens=u.cache_read_tokens))
    return start, _rest(answer)


async def _rest(answer: ChatResponse) -> AsyncIterator[StreamEvent]:
    index = 0
    for part in answer.content:
        if isinstance(part, TextPart):
            text = part.text
            for i in range(0, len(text), CHUNK_CHARS):
                yield TextDelta(text[i:i + CHUNK_CHARS])
        elif isinstance(part, ThinkingPart):
            if part.redacted_data is not None:
                yield ThinkingDelta(redacted_data=part.redacted_data)
                continue
            text = part.text
            for i in range(0, len(text), CHUNK_CHARS):
                yield ThinkingDelta(text[i:i + CHUNK_CHARS])
            if part.signature:
                yield ThinkingDelta(signature=part.signature)
        elif isinstance(part, ToolCallPart):
            yield ToolCallStart(index, part.id, part.name)
            yield ToolCallDelta(index, part.arguments)
            index += 1
    yield StreamEnd(answer.stop_reason, answer.usage, answer.stop_sequence)
