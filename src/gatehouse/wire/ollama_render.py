"""Canonical replies rendered as Ollama's native API: /api/chat and /api/generate JSON, their
NDJSON streams, and /api/embed.

Ollama clients compute tokens per second from the `*_duration` fields (nanoseconds), so
they are filled from the gateway's own clock and never zero.
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Any

import msgspec

from gatehouse.types import (
    ChatResponse,
    StreamEnd,
    StreamEvent,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    Usage,
    json_decode,
    json_encode,
)
from gatehouse.wire import errors_ollama

DONE_REASON = {"length": "length"}  # everything else ends as "stop", as Ollama reports it
NDJSON_HEADERS = [
    (b"content-type", b"application/x-ndjson"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Timing:
    """When the request started and its first token came: the durations Ollama reports."""

    __slots__ = ("started", "first_token_at")

    def __init__(self, started: float):
        self.started = started
        self.first_token_at: float | None = None

    def token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()

    def durations(self, usage: Usage | None) -> dict[str, Any]:
        u = usage or Usage()
        total = max(2, int((time.monotonic() - self.started) * 1e9))
        if self.first_token_at is not None:
            prompt = int((self.first_token_at - self.started) * 1e9)
        else:  # not streamed: split the time by token counts
            prompt = total * u.input_tokens // max(1, u.input_tokens + u.output_tokens)
        prompt = min(max(1, prompt), total - 1)
        return {
            "total_duration": total,
            "load_duration": 0,
            "prompt_eval_count": u.input_tokens,
            "prompt_eval_duration": prompt,
            "eval_count": u.output_tokens,
            "eval_duration": total - prompt,
        }


def arguments_object(arguments: str) -> dict[str, Any]:
    """Ollama tool arguments are objects (clients validate them as such); a cut-off reply's
    unparseable text becomes an empty object rather than a client-side crash."""
    try:
        value = json_decode(arguments or "{}")
    except (msgspec.DecodeError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def tool_calls_out(calls: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    return [{"id": call_id, "function": {"index": i, "name": name, "arguments": arguments_object(args)}}
            for i, (call_id, name, args) in enumerate(calls)]


def render_chat(resp: ChatResponse, model: str, timing: Timing) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant",
                               "content": "".join(p.text for p in resp.content if isinstance(p, TextPart))}
    thinking = "".join(p.text for p in resp.content if isinstance(p, ThinkingPart))
    if thinking:
        message["thinking"] = thinking
    calls = [(p.id, p.name, p.arguments) for p in resp.content if isinstance(p, ToolCallPart)]
    if calls:
        message["tool_calls"] = tool_calls_out(calls)
    return {"model": model, "created_at": now_iso(), "message": message, "done": True,
            "done_reason": DONE_REASON.get(resp.stop_reason, "stop"), **timing.durations(resp.usage)}


def render_generate(resp: ChatResponse, model: str, timing: Timing) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "created_at": now_iso(),
                           "response": "".join(p.text for p in resp.content if isinstance(p, TextPart))}
    thinking = "".join(p.text for p in resp.content if isinstance(p, ThinkingPart))
    if thinking:
        out["thinking"] = thinking
    out.update(done=True, done_reason=DONE_REASON.get(resp.stop_reason, "stop"), **timing.durations(resp.usage))
    return out


def render_embed(vectors: list[list[float]], model: str, usage: Usage, timing: Timing) -> dict[str, Any]:
    d = timing.durations(usage)
    return {"model": model, "embeddings": vectors, "total_duration": d["total_duration"], "load_duration": 0,
            "prompt_eval_count": usage.input_tokens}


class NDJSONEncoder:
    """Canonical stream events -> Ollama NDJSON lines (`kind` is "chat" or "generate")."""

    stream_headers = NDJSON_HEADERS

    def __init__(self, model: str, kind: str, timing: Timing):
        self.model = model
        self.chat = kind == "chat"
        self.timing = timing
        self.calls: dict[int, list[str]] = {}  # index -> [id, name, arguments so far]

    def _line(self, content: str = "", thinking: str | None = None, **extra: Any) -> bytes:
        obj: dict[str, Any] = {"model": self.model, "created_at": now_iso()}
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking:
                message["thinking"] = thinking
            if "tool_calls" in extra:
                message["tool_calls"] = extra.pop("tool_calls")
            obj["message"] = message
        else:
            obj["response"] = content
            if thinking:
                obj["thinking"] = thinking
        obj["done"] = False
        obj.update(extra)
        return json_encode(obj) + b"\n"

    def encode(self, ev: StreamEvent) -> bytes:
        if isinstance(ev, TextDelta):
            self.timing.token()
            return self._line(ev.text)
        if isinstance(ev, ThinkingDelta):
            if not ev.text:
                return b""
            self.timing.token()
            return self._line(thinking=ev.text)
        if isinstance(ev, ToolCallStart):
            self.timing.token()
            self.calls[ev.index] = [ev.id, ev.name, ""]
            return b""
        if isinstance(ev, ToolCallDelta):
            call = self.calls.get(ev.index)
            if call is not None:
                call[2] += ev.arguments
            return b""
        if isinstance(ev, StreamEnd):
            out = b""
            if self.calls and self.chat:  # Ollama sends tool calls whole, in one line
                calls = [tuple(self.calls[i]) for i in sorted(self.calls)]
                out = self._line(tool_calls=tool_calls_out(calls))  # type: ignore[arg-type]
            return out + self._line(done=True, done_reason=DONE_REASON.get(ev.stop_reason, "stop"),
                                    **self.timing.durations(ev.usage))
        return b""

    def error(self, message: str, type_: str = "api_error") -> bytes:
        return errors_ollama.stream_frame(message, type_)
