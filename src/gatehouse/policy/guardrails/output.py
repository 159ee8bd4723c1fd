"""Output checks: on a whole answer, and on a stream through a sliding window.

The stream filter holds back the last `plan.window` characters of text (the longest text one
output check can match), so a match split across chunks is still seen whole; text before the
window is released, redacted where needed. Any other event (a tool call, the end) releases the
held text first, so the order of the stream is kept. Reasoning text and tool-call arguments
are not checked (docs/guardrails.md).
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from operator import is_not
from typing import TYPE_CHECKING

from gatehouse.policy.guardrails.audit import OUTPUT
from gatehouse.policy.guardrails.engine import redact
from gatehouse.policy.guardrails.step import Guard, blocked, judge_answer
from gatehouse.types import ChatResponse, KeepAlive, StreamEvent, StreamStart, TextDelta, TextPart

if TYPE_CHECKING:
    from gatehouse.gateway.endpoint import Call


async def guard_response(guard: Guard, result: object, request_id: str) -> None:
    """Check a non-streamed answer in place: raise GuardrailBlocked, or redact its text; then
    the output guard models judge it (as redacted)."""
    if not isinstance(result, ChatResponse):
        return  # embeddings: no text comes back
    checks = guard.plan.output
    for part in result.content:
        if isinstance(part, TextPart):
            part.text = guard.check_text(part.text, checks, "output")
    if guard.plan.guard_output:
        await judge_answer(guard, "".join(p.text for p in result.content if isinstance(p, TextPart)), request_id)


async def guard_forwarded(guard: Guard, call: Call, body: bytes, request_id: str,
                          texts: list[str] | None = None) -> bytes:
    """Check a forwarded unary answer: the same checks on the same text as `guard_response`
    (the text parts of the canonical answer: `Call.answer_texts`). Returns `body` itself when
    nothing was redacted (the bytes pass through), else the answer rendered redacted. `texts`:
    the answer's texts when the forwarder read them with its usage (Forwarded.texts)."""
    if not guard.plan.guard_output:
        return check_forwarded(guard, call, body, texts)
    if texts is None:
        texts = call.answer_texts(body)
    if texts is None:
        return body  # embeddings: no text comes back
    checks = guard.plan.output
    checked = [guard.check_text(t, checks, "output") for t in texts]  # a block raises
    await judge_answer(guard, "".join(checked), request_id)
    return _redacted(call, body, texts, checked)


def check_forwarded(guard: Guard, call: Call, body: bytes, texts: list[str] | None = None) -> bytes:
    """`guard_forwarded` for a plan without output guard models: nothing to wait for, so no
    coroutine (the relay calls this directly: the common case costs no await)."""
    if texts is None:
        texts = call.answer_texts(body)
    if texts is None:
        return body  # embeddings: no text comes back
    checks = guard.plan.output
    if texts and checks.clean(texts):  # the common case: one match of the triggers, the bytes pass
        guard.scanned |= OUTPUT
        return body
    return _redacted(call, body, texts, [guard.check_text(t, checks, "output") for t in texts])  # a block raises


def _redacted(call: Call, body: bytes, texts: list[str], checked: list[str]) -> bytes:
    """`body` itself when no text changed, else the answer rendered with the checked texts."""
    if not any(map(is_not, texts, checked)):
        return body
    result = call.read_answer(body)
    for part, text in zip((p for p in result.content if isinstance(p, TextPart)), checked):
        part.text = text
    return call.render(result)


class StreamFilter:
    __slots__ = ("guard", "checks", "window", "tail")

    def __init__(self, guard: Guard):
        self.guard = guard
        self.checks = guard.plan.output
        self.window = guard.plan.window
        self.tail = ""

    def feed(self, delta: str) -> str:
        text = self.tail + delta if self.tail else delta
        hits = self.checks.scan(text)
        self.guard.record(self.checks, hits, "output")
        if hits:
            blocking = [h.check for h in hits if h.check.action == "block"]
            if blocking:
                raise blocked(blocking, "output")
        cut = len(text) - self.window
        for h in hits:
            if h.end > cut:
                cut = min(cut, h.start)  # a match reaching into the window waits whole
        if cut <= 0:
            self.tail = text
            return ""
        self.tail = text[cut:]
        return redact(text[:cut], [h for h in hits if h.end <= cut])

    def flush(self) -> str:
        text, self.tail = self.tail, ""
        return self.guard.check_text(text, self.checks, "output") if text else ""


async def guard_events(first: StreamEvent, events: AsyncIterator[StreamEvent], guard: Guard,
                       request_id: str = "") -> AsyncIterator[StreamEvent]:
    """The stream with its text checked; GuardrailBlocked ends it (the relay renders the error).
    With output guard models the answer is held until they pass (only its start and
    keepalives go out before)."""
    if guard.plan.guard_output:
        async for ev in _held(_filtered(first, events, guard), guard, request_id):
            yield ev
        return
    async for ev in _filtered(first, events, guard):
        yield ev


async def _filtered(first: StreamEvent, events: AsyncIterator[StreamEvent], guard: Guard) -> AsyncIterator[StreamEvent]:
    """The stream's text through the output checks (StreamFilter)."""
    f = StreamFilter(guard)

    async def source() -> AsyncIterator[StreamEvent]:
        yield first
        async for ev in events:
            yield ev

    try:
        async for ev in source():
            if isinstance(ev, TextDelta):
                out = f.feed(ev.text)
                if out:
                    yield TextDelta(out)
                continue
            if isinstance(ev, KeepAlive):  # silence, not a boundary: keep the window
                yield ev
                continue
            held = f.flush()
            if held:
                yield TextDelta(held)
            yield ev
        held = f.flush()
        if held:
            yield TextDelta(held)
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


async def _held(events: AsyncIterator[StreamEvent], guard: Guard, request_id: str) -> AsyncIterator[StreamEvent]:
    held: list[StreamEvent] = []
    text: list[str] = []
    try:
        async for ev in events:
            if isinstance(ev, (StreamStart, KeepAlive)):
                yield ev
                continue
            if isinstance(ev, TextDelta):
                text.append(ev.text)
            held.append(ev)
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
    await judge_answer(guard, "".join(text), request_id)
    for ev in held:
        yield ev
