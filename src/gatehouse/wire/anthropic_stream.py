"""Anthropic streaming: SSE events ⇄ canonical stream events, and the pass-through relay.

The event sequence Anthropic clients expect (and that we both produce and consume):

    message_start, then per content block: content_block_start (the first one followed by
    a ping), content_block_delta* (text_delta | thinking_delta | signature_delta |
    input_json_delta), content_block_stop; then message_delta (stop_reason, stop_sequence,
    usage), message_stop.

A failure after the first byte is an `event: error` frame and the end of the stream: never
a hang, never a made-up `end_turn`.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from msgspec import Struct

from gatehouse.errors import GatehouseError, UpstreamError
from gatehouse.types import (
    KeepAlive,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    json_encode,
)
from gatehouse.upstream.sse import iter_events, iter_frames, parse_frame
from gatehouse.wire import errors_anthropic
from gatehouse.wire.anthropic import ABlock
from gatehouse.wire.anthropic_response import (
    STOP_FROM_ANTHROPIC,
    STOP_TO_ANTHROPIC,
    AUsage,
    message_id,
    tool_use_id,
    usage_out,
)
from gatehouse.wire.model_swap import ModelSwap

# ---- Anthropic SSE -> canonical events (egress decoding) -----------------------------------------


class _Delta(Struct, omit_defaults=True):
    type: str | None = None
    text: str | None = None
    thinking: str | None = None
    signature: str | None = None
    partial_json: str | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None


class _MessageHead(Struct, omit_defaults=True):
    id: str = ""
    model: str = ""
    usage: AUsage | None = None


class _ErrorBody(Struct, omit_defaults=True):
    type: str = "api_error"
    message: str = "upstream error"


class _Event(Struct, omit_defaults=True):
    type: str
    index: int = 0
    message: _MessageHead | None = None
    content_block: ABlock | None = None
    delta: _Delta | None = None
    usage: AUsage | None = None
    error: _ErrorBody | None = None


event_decoder = msgspec.json.Decoder(_Event)


def stream_error(err: _ErrorBody, model: str) -> GatehouseError:
    """An upstream `error` event as a gateway error (wire/errors_anthropic.py)."""
    return errors_anthropic.stream_error(err.type, err.message, model)


def _merge_usage(total: AUsage, part: AUsage | None) -> None:
    """message_delta usage is cumulative: later non-null counts replace earlier ones."""
    if part is None:
        return
    for name in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        v = getattr(part, name)
        if v:
            setattr(total, name, v)


async def decode_stream(chunks: AsyncIterator[bytes], model: str) -> AsyncIterator[StreamEvent]:
    usage = AUsage()
    stop_reason: str | None = None
    stop_sequence: str | None = None
    started = finished = False
    tool_of_block: dict[int, int] = {}  # content block index -> tool call index
    async for sse in iter_events(chunks):
        if sse.event == "ping" or not sse.data:
            continue
        try:
            ev = event_decoder.decode(sse.data)
        except (msgspec.DecodeError, RecursionError):
            raise UpstreamError(f"The upstream for model '{model}' sent a malformed stream event.") from None
        t = ev.type
        if t == "error":
            raise stream_error(ev.error or _ErrorBody(), model)
        if t == "message_start" and ev.message is not None:
            started = True
            _merge_usage(usage, ev.message.usage)
            yield StreamStart(ev.message.id or "msg_gatehouse", ev.message.model or model,
                              ev.message.usage.canonical() if ev.message.usage else None)
        elif t == "content_block_start" and ev.content_block is not None:
            b = ev.content_block
            if b.type == "tool_use":
                idx = tool_of_block[ev.index] = len(tool_of_block)
                yield ToolCallStart(idx, b.id or f"toolu_{idx}", b.name or "")
            elif b.type == "text" and b.text:
                yield TextDelta(b.text)
            elif b.type == "thinking" and (b.thinking or b.signature):
                yield ThinkingDelta(b.thinking or "", b.signature or None)
            elif b.type == "redacted_thinking":
                yield ThinkingDelta(redacted_data=b.data or "")
        elif t == "content_block_delta" and ev.delta is not None:
            d = ev.delta
            if d.type == "text_delta" and d.text:
                yield TextDelta(d.text)
            elif d.type == "thinking_delta" and d.thinking:
                yield ThinkingDelta(d.thinking)
            elif d.type == "signature_delta" and d.signature:
                yield ThinkingDelta(signature=d.signature)
            elif d.type == "input_json_delta" and d.partial_json and ev.index in tool_of_block:
                yield ToolCallDelta(tool_of_block[ev.index], d.partial_json)
        elif t == "message_delta":
            if ev.delta is not None:
                stop_reason, stop_sequence = ev.delta.stop_reason or stop_reason, ev.delta.stop_sequence
            _merge_usage(usage, ev.usage)
        elif t == "message_stop":
            finished = True
            break
    if not started:
        raise UpstreamError(f"The upstream for model '{model}' ended the stream without a response.")
    if not finished:
        raise UpstreamError(f"The upstream for model '{model}' ended the stream early.", code="upstream_disconnected")
    yield StreamEnd(STOP_FROM_ANTHROPIC.get(stop_reason, "end"), usage.canonical(), stop_sequence)


# ---- canonical events -> Anthropic SSE (ingress encoding) ------------------------------------------


def frame(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + json_encode(data) + b"\n\n"


class MessageStreamEncoder:
    """Canonical events -> Anthropic SSE. Opens a content block when the kind of output
    changes (thinking, text, each tool call), closes the previous one first, and keeps the
    block indexes the client uses to assemble the message."""

    def __init__(self, model: str, input_estimate: int = 0):
        self.model = model
        self.input_estimate = input_estimate
        self.next_index = 0
        self.open_kind: str | None = None  # "text" | "thinking" | "tool:<n>"
        self.open_index = -1
        self.tool_blocks: dict[int, int] = {}  # tool call index -> content block index
        self.started = False

    def _start_block(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._stop_block()
        self.open_kind, self.open_index = kind, self.next_index
        self.next_index += 1
        out += frame("content_block_start", {"type": "content_block_start", "index": self.open_index,
                                             "content_block": block})
        if self.open_index == 0:  # where Anthropic sends its ping
            out += frame("ping", {"type": "ping"})
        return out

    def _stop_block(self) -> bytes:
        if self.open_kind is None:
            return b""
        index, self.open_kind = self.open_index, None
        return frame("content_block_stop", {"type": "content_block_stop", "index": index})

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return frame("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def _message_start(self, ev: StreamStart) -> bytes:
        self.started = True
        usage = usage_out(ev.usage) if ev.usage else usage_out(Usage(input_tokens=self.input_estimate))
        usage["output_tokens"] = 0
        message: dict[str, Any] = {"id": message_id(ev.id), "type": "message", "role": "assistant", "model": self.model,
                   "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}
        return frame("message_start", {"type": "message_start", "message": message})

    def encode(self, ev: StreamEvent) -> bytes:
        if isinstance(ev, TextDelta):
            if not ev.text:
                return b""
            out = b"" if self.open_kind == "text" else self._start_block("text", {"type": "text", "text": ""})
            return out + self._delta(self.open_index, {"type": "text_delta", "text": ev.text})
        if isinstance(ev, ThinkingDelta):
            return self._thinking(ev)
        if isinstance(ev, ToolCallStart):
            out = self._start_block(f"tool:{ev.index}", {"type": "tool_use", "id": tool_use_id(ev.id),
                                                          "name": ev.name, "input": {}})
            self.tool_blocks[ev.index] = self.open_index
            return out
        if isinstance(ev, ToolCallDelta):
            if not ev.arguments:
                return b""
            index = self.tool_blocks.get(ev.index)
            if index is None:  # arguments before the call's start: open its block now
                out = self.encode(ToolCallStart(ev.index, "", ""))
                return out + self._delta(self.open_index, {"type": "input_json_delta", "partial_json": ev.arguments})
            return self._delta(index, {"type": "input_json_delta", "partial_json": ev.arguments})
        if isinstance(ev, StreamStart):
            return self._message_start(ev)
        if isinstance(ev, StreamEnd):
            return self._end(ev)
        if isinstance(ev, KeepAlive):
            return frame("ping", {"type": "ping"})
        return b""

    def _thinking(self, ev: ThinkingDelta) -> bytes:
        if ev.redacted_data is not None:
            out = self._start_block("redacted", {"type": "redacted_thinking", "data": ev.redacted_data})
            return out + self._stop_block()
        out = b""
        if ev.text:
            if self.open_kind != "thinking":
                out += self._start_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out += self._delta(self.open_index, {"type": "thinking_delta", "thinking": ev.text})
        if ev.signature:
            if self.open_kind != "thinking":
                out += self._start_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out += self._delta(self.open_index, {"type": "signature_delta", "signature": ev.signature})
        return out

    def _end(self, ev: StreamEnd) -> bytes:
        out = b"" if self.started else self._message_start(StreamStart("", self.model))
        out += self._stop_block()
        usage = usage_out(ev.usage) if ev.usage else {"output_tokens": 0}
        delta = {"stop_reason": STOP_TO_ANTHROPIC[ev.stop_reason], "stop_sequence": ev.stop_sequence}
        out += frame("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        return out + frame("message_stop", {"type": "message_stop"})

    def error(self, message: str, type_: str = "api_error") -> bytes:
        return errors_anthropic.stream_frame(message, type_)


async def with_keepalive(events: AsyncIterator[StreamEvent], interval: float) -> AsyncIterator[StreamEvent]:
    """Pass events through; after the first one, insert a KeepAlive whenever the upstream is
    silent for `interval` seconds (a model building a long tool call without streaming it),
    so clients with an idle timeout (Claude Code aborts after minutes of silence) stay put.
    Before the first event nothing is inserted: the dispatcher may still fail over."""
    it = events.__aiter__()
    pending: asyncio.Future[Any] | None = None
    started = False
    try:
        while True:
            if not started:
                ev = await it.__anext__()
                started = True
                yield ev
                continue
            if pending is None:
                pending = asyncio.ensure_future(it.__anext__())
            done, _ = await asyncio.wait((pending,), timeout=interval)
            if not done:
                yield KeepAlive()
                continue
            task, pending = pending, None
            try:
                ev = task.result()
            except StopAsyncIteration:
                return
            yield ev
    except StopAsyncIteration:
        return
    finally:
        if pending is not None:  # let the cancelled step finish before closing its generator
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


# ---- pass-through relay -----------------------------------------------------------------------------

_INSPECT = (b"message_start", b"message_delta", b"message_stop", b"event: error", b'"type":"error"',
            b'"type": "error"')


class _DeltaFrame(Struct):
    delta: _Delta | None = None


_delta_decoder = msgspec.json.Decoder(_DeltaFrame)


def _delta_chars(raw: bytes) -> int:
    """Characters of generated text (text, thinking, tool-call JSON) in a content_block_delta
    frame; the estimate of a stream cut before its final usage is built from them."""
    at = raw.find(b"data:")
    if at < 0:
        return 0
    try:
        d = _delta_decoder.decode(raw[at + 5:]).delta
    except msgspec.DecodeError:
        return 0
    if d is None:
        return 0
    return len(d.text or "") + len(d.thinking or "") + len(d.partial_json or "")


class MessageStreamRelay:
    """Relay an Anthropic SSE stream byte for byte, reading usage from message_start and
    message_delta on the way. An upstream `error` event or a stream that ends without
    message_stop becomes a gateway error, which the dispatcher renders as an `error` event.

    `usage` is what the upstream reported so far; it is final only once message_delta came
    (message_start carries the prompt's tokens and a placeholder output count of 1). A stream
    cut before that is billed by `final_usage`: the reported input and the relayed deltas'
    text at ~4 characters per token, flagged estimated."""

    def __init__(self, model: str, model_swap: ModelSwap | None = None):
        self.model = model
        self.swap = model_swap.apply if model_swap is not None else None  # upstream id -> public name
        self.usage: Usage | None = None
        self.finished = False
        self.frames = 0
        self.delta_chars = 0  # generated text relayed, for the estimate of a cut stream
        self._usage = AUsage()
        self._final = False  # message_delta seen: `usage` holds the final output count
        self.finish_reason: str | None = None  # (traces) message_delta's stop_reason

    async def relay(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for frames in iter_frames(chunks):
            out: list[bytes] = []
            for raw in frames:
                if any(marker in raw for marker in _INSPECT):
                    problem = self._inspect(raw)
                    if problem is not None:
                        if out:
                            yield b"\n\n".join(out) + b"\n\n"
                        raise problem
                    if self.swap is not None:  # message_start names the model
                        raw = self.swap(raw)
                else:
                    self.frames += 1
                    if b"content_block_delta" in raw:
                        self.delta_chars += _delta_chars(raw)
                out.append(raw)
            if out:
                yield b"\n\n".join(out) + b"\n\n"
        if not self.finished:
            raise UpstreamError(f"The upstream for model '{self.model}' ended the stream early.",
                                code="upstream_disconnected")

    def _inspect(self, raw: bytes) -> GatehouseError | None:
        sse = parse_frame(raw)
        if sse is None or not sse.data:
            return None
        try:
            ev = event_decoder.decode(sse.data)
        except (msgspec.DecodeError, RecursionError):
            return None
        if ev.type == "message_start" and ev.message is not None:
            _merge_usage(self._usage, ev.message.usage)
        elif ev.type == "message_delta":
            _merge_usage(self._usage, ev.usage)
            self._final = True
            if ev.delta is not None and ev.delta.stop_reason:
                self.finish_reason = ev.delta.stop_reason
        elif ev.type == "message_stop":
            self.finished = True
        elif ev.type == "error":
            self.usage = self._usage.canonical()
            return stream_error(ev.error or _ErrorBody(), self.model)
        else:
            d = ev.delta  # (a delta whose text happens to contain one of the markers)
            if ev.type == "content_block_delta" and d is not None:
                self.delta_chars += len(d.text or "") + len(d.thinking or "") + len(d.partial_json or "")
            return None
        self.usage = self._usage.canonical()
        return None

    def final_usage(self, prompt_estimate: int) -> Usage:
        """The usage to bill: the upstream's final report, or for a stream cut before it the
        reported input (else `prompt_estimate`) and an estimate of the output relayed."""
        if self._final and self.usage is not None:
            return self.usage
        start = self.usage
        output = (self.delta_chars + 3) // 4
        if start is None:
            return Usage(input_tokens=prompt_estimate, output_tokens=output, estimated=True)
        return Usage(input_tokens=start.input_tokens or prompt_estimate, output_tokens=output,
                     cache_read_tokens=start.cache_read_tokens, cache_write_tokens=start.cache_write_tokens,
                     estimated=True)
