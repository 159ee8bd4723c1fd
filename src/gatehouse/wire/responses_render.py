"""Canonical responses and stream events -> OpenAI Responses API objects and SSE events.

A stream is `response.created`, `response.in_progress`, then per output item
`response.output_item.added` ... `response.output_item.done`, and always exactly one terminal
event: `response.completed`, `response.incomplete` or `response.failed`. Codex fails a stream
that closes without one. Every event carries a `sequence_number`; there is no `[DONE]`.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from gatehouse.types import (
    ChatResponse,
    KeepAlive,
    StopReason,
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
    json_encode,
)
from gatehouse.wire import errors_responses
from gatehouse.wire.responses import CUSTOM_INPUT

_INCOMPLETE: dict[str, str] = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(12).hex()}"


def usage_out(u: Usage | None) -> dict[str, Any]:
    u = u or Usage()
    return {"input_tokens": u.input_tokens, "input_tokens_details": {"cached_tokens": u.cache_read_tokens},
            "output_tokens": u.output_tokens, "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": u.input_tokens + u.output_tokens}


def _custom_input(arguments: str) -> str:
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return arguments
    return str(value.get(CUSTOM_INPUT, "")) if isinstance(value, dict) else arguments


def _call_item(call_id: str, name: str, arguments: str, custom: frozenset[str], item_id: str) -> dict[str, Any]:
    if name in custom:
        return {"type": "custom_tool_call", "id": item_id, "status": "completed", "call_id": call_id, "name": name,
                "input": _custom_input(arguments)}
    return {"type": "function_call", "id": item_id, "status": "completed", "call_id": call_id, "name": name,
            "arguments": arguments}


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def _reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": item_id, "summary": [{"type": "summary_text", "text": text}] if text else []}


def response_object(rid: str, model: str, created: float, output: list[dict[str, Any]], stop: StopReason | None,
                    usage: Usage | None, error: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    status = "failed" if error else "in_progress" if stop is None else \
        "incomplete" if stop in _INCOMPLETE else "completed"
    return {
        "id": rid, "object": "response", "created_at": int(created), "status": status, "error": error,
        "incomplete_details": {"reason": _INCOMPLETE[stop]} if stop in _INCOMPLETE else None,
        "model": model, "output": output, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
        "usage": usage_out(usage) if stop is not None or error else None, **(extra or {}),
    }


def render_response(resp: ChatResponse, public_model: str, custom: frozenset[str],
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    text: list[str] = []
    for part in resp.content:
        if isinstance(part, ThinkingPart):
            output.append(_reasoning_item(_id("rs"), part.text))
        elif isinstance(part, TextPart):
            text.append(part.text)
        elif isinstance(part, ToolCallPart):
            output.append(_call_item(part.id, part.name, part.arguments, custom, _id("fc")))
    if text:
        output.insert(sum(1 for o in output if o["type"] == "reasoning"), _message_item(_id("msg"), "".join(text)))
    return response_object(_id("resp"), public_model, resp.created or time.time(), output, resp.stop_reason, resp.usage,
                           extra=extra)


class _Item:
    __slots__ = ("kind", "id", "index", "text", "call_id", "name")

    def __init__(self, kind: str, item_id: str, index: int, call_id: str = "", name: str = ""):
        self.kind, self.id, self.index, self.text, self.call_id, self.name = kind, item_id, index, "", call_id, name


class ResponsesStreamEncoder:
    """Canonical stream events -> Responses SSE events, with one terminal event guaranteed."""

    def __init__(self, public_model: str, custom: frozenset[str] = frozenset(), extra: dict[str, Any] | None = None,
                 on_final: Callable[[dict[str, Any]], None] | None = None):
        self.model = public_model
        self.custom = custom
        self.extra = extra  # more fields of the response object (store, previous_response_id)
        self.on_final = on_final  # given the final response of a stream that completed (to store it)
        self.rid = _id("resp")
        self.created = time.time()
        self.seq = 0
        self.output: list[dict[str, Any]] = []  # finished items, in output order
        self.open: _Item | None = None  # the reasoning or message item being written
        self.calls: dict[int, _Item] = {}  # tool calls by their canonical index, until the end
        self.next_index = 0
        self.started = False
        self.finished = False

    def _event(self, kind: str, body: dict[str, Any]) -> bytes:
        body = {"type": kind, "sequence_number": self.seq, **body}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + json_encode(body) + b"\n\n"

    def _response(self, stop: StopReason | None, usage: Usage | None = None,
                  error: dict[str, Any] | None = None) -> dict[str, Any]:
        return response_object(self.rid, self.model, self.created, self.output, stop, usage, error, self.extra)

    def _start(self) -> bytes:
        self.started = True
        snapshot = self._response(None)
        return self._event("response.created", {"response": snapshot}) + \
            self._event("response.in_progress", {"response": snapshot})

    def _open(self, kind: str) -> bytes:
        out = self._close_open()
        item = _Item(kind, _id("rs" if kind == "reasoning" else "msg"), self.next_index)
        self.open = item
        self.next_index += 1
        if kind == "reasoning":
            added = {"type": "reasoning", "id": item.id, "summary": []}
            out += self._event("response.output_item.added", {"output_index": item.index, "item": added})
            return out + self._event("response.reasoning_summary_part.added", {
                "item_id": item.id, "output_index": item.index, "summary_index": 0,
                "part": {"type": "summary_text", "text": ""}})
        added = _message_item(item.id, "", "in_progress")
        added["content"] = []
        out += self._event("response.output_item.added", {"output_index": item.index, "item": added})
        return out + self._event("response.content_part.added", {
            "item_id": item.id, "output_index": item.index, "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})

    def _close_open(self) -> bytes:
        item, self.open = self.open, None
        if item is None:
            return b""
        where = {"item_id": item.id, "output_index": item.index}
        if item.kind == "reasoning":
            done = _reasoning_item(item.id, item.text)
            out = self._event("response.reasoning_summary_text.done", {**where, "summary_index": 0, "text": item.text})
            out += self._event("response.reasoning_summary_part.done", {
                **where, "summary_index": 0, "part": {"type": "summary_text", "text": item.text}})
        else:
            done = _message_item(item.id, item.text)
            out = self._event("response.output_text.done", {**where, "content_index": 0, "text": item.text,
                                                            "logprobs": []})
            out += self._event("response.content_part.done", {**where, "content_index": 0,
                                                              "part": done["content"][0]})
        self.output.append(done)
        return out + self._event("response.output_item.done", {"output_index": item.index, "item": done})

    def _close_calls(self) -> bytes:
        out = b""
        for call in sorted(self.calls.values(), key=lambda c: c.index):
            done = _call_item(call.call_id, call.name, call.text, self.custom, call.id)
            where = {"item_id": call.id, "output_index": call.index}
            if done["type"] == "custom_tool_call":
                out += self._event("response.custom_tool_call_input.done", {**where, "input": done["input"]})
            else:
                out += self._event("response.function_call_arguments.done", {**where, "arguments": call.text})
            self.output.append(done)
            out += self._event("response.output_item.done", {"output_index": call.index, "item": done})
        self.calls.clear()
        return out

    def encode(self, ev: StreamEvent) -> bytes:
        if self.finished:
            return b""
        out = b"" if self.started else self._start()
        if isinstance(ev, StreamStart) or isinstance(ev, KeepAlive):
            return out
        if isinstance(ev, TextDelta):
            if self.open is None or self.open.kind != "message":
                out += self._open("message")
            assert self.open is not None
            self.open.text += ev.text
            return out + self._event("response.output_text.delta", {
                "item_id": self.open.id, "output_index": self.open.index, "content_index": 0, "delta": ev.text,
                "logprobs": []})
        if isinstance(ev, ThinkingDelta):
            if not ev.text:
                return out
            if self.open is None or self.open.kind != "reasoning":
                out += self._open("reasoning")
            assert self.open is not None
            self.open.text += ev.text
            return out + self._event("response.reasoning_summary_text.delta", {
                "item_id": self.open.id, "output_index": self.open.index, "summary_index": 0, "delta": ev.text})
        if isinstance(ev, ToolCallStart):
            out += self._close_open()
            call = self.calls[ev.index] = _Item("call", _id("fc"), self.next_index, ev.id, ev.name)
            self.next_index += 1
            added = _call_item(ev.id, ev.name, "", self.custom, call.id)
            added["status"] = "in_progress"
            return out + self._event("response.output_item.added", {"output_index": call.index, "item": added})
        if isinstance(ev, ToolCallDelta):
            growing = self.calls.get(ev.index)
            if growing is None:
                return out
            growing.text += ev.arguments
            if growing.name in self.custom:
                return out  # the free-form input is sent whole, once the JSON wrapping it is complete
            return out + self._event("response.function_call_arguments.delta", {
                "item_id": growing.id, "output_index": growing.index, "delta": ev.arguments})
        assert isinstance(ev, StreamEnd)
        out += self._close_open() + self._close_calls()
        self.finished = True
        kind = "response.incomplete" if ev.stop_reason in _INCOMPLETE else "response.completed"
        final = self._response(ev.stop_reason, ev.usage)
        if self.on_final is not None:
            self.on_final(final)
        return out + self._event(kind, {"response": final})

    def error(self, message: str, type_: str = "api_error") -> bytes:
        """The stream failed: `response.failed` (the one terminal event), unless one was sent."""
        if self.finished:
            return b""
        out = b"" if self.started else self._start()
        out += self._close_open() + self._close_calls()
        self.finished = True
        failure = errors_responses.failure(message, type_)
        return out + self._event("response.failed", {"response": self._response(None, None, failure)})
