"""Anthropic Messages responses ⇄ canonical responses, usage and stop reasons.

Egress: `response_to_canonical` (providers/anthropic.py). Ingress: `render_response`
(api/anthropic.py). Anthropic's `input_tokens` leaves out cached tokens; canonical usage
counts them in (see types.Usage), so both directions convert.
"""
from __future__ import annotations

import re
import time
import uuid
from typing import Any

import msgspec
from msgspec import Struct

from gatehouse.types import (
    ChatResponse,
    Part,
    StopReason,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    Usage,
)
from gatehouse.wire.anthropic import ABlock, json_text, tool_input

# ---- Anthropic response -> canonical -------------------------------------------------------------


class AUsage(Struct, omit_defaults=True):
    input_tokens: int | None = 0
    output_tokens: int | None = 0
    cache_creation_input_tokens: int | None = 0
    cache_read_input_tokens: int | None = 0

    def canonical(self) -> Usage:
        # Canonical input counts every prompt token (OpenAI's convention); Anthropic's
        # input_tokens leaves out what was read from or written to the cache.
        read, write = self.cache_read_input_tokens or 0, self.cache_creation_input_tokens or 0
        return Usage(input_tokens=(self.input_tokens or 0) + read + write, output_tokens=self.output_tokens or 0,
                     cache_read_tokens=read, cache_write_tokens=write)


class AResponse(Struct, omit_defaults=True):
    id: str = ""
    model: str = ""
    content: list[ABlock] = []
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: AUsage | None = None


class AUsageOnly(Struct):
    usage: AUsage | None = None


response_decoder = msgspec.json.Decoder(AResponse)
usage_only_decoder = msgspec.json.Decoder(AUsageOnly)

STOP_FROM_ANTHROPIC: dict[str | None, StopReason] = {
    "end_turn": "end", "max_tokens": "length", "tool_use": "tool_calls", "stop_sequence": "stop_sequence",
    "pause_turn": "end", "refusal": "content_filter", "model_context_window_exceeded": "length", None: "end",
}
STOP_TO_ANTHROPIC: dict[str, str] = {
    "end": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "stop_sequence": "stop_sequence",
    "content_filter": "refusal", "error": "end_turn",
}


def response_to_canonical(resp: AResponse, fallback_model: str) -> ChatResponse:
    parts: list[Part] = []
    for b in resp.content:
        if b.type == "text":
            parts.append(TextPart(b.text or ""))
        elif b.type == "thinking":
            parts.append(ThinkingPart(b.thinking or "", b.signature or None))
        elif b.type == "redacted_thinking":
            parts.append(ThinkingPart(redacted_data=b.data or ""))
        elif b.type == "tool_use":
            parts.append(ToolCallPart(b.id or "", b.name or "", json_text(b.input)))
    return ChatResponse(
        id=resp.id or f"msg_{uuid.uuid4().hex[:24]}",
        model=resp.model or fallback_model,
        content=parts,
        stop_reason=STOP_FROM_ANTHROPIC.get(resp.stop_reason, "end"),
        stop_sequence=resp.stop_sequence,
        usage=resp.usage.canonical() if resp.usage else Usage(estimated=True),
        created=int(time.time()),
    )


# ---- canonical -> Anthropic response (ingress rendering) -----------------------------------------

_BAD_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


def message_id(upstream_id: str) -> str:
    return upstream_id if upstream_id.startswith("msg_") else f"msg_{upstream_id or uuid.uuid4().hex[:24]}"


def tool_use_id(upstream_id: str) -> str:
    """Anthropic tool ids match ^[a-zA-Z0-9_-]+$; clients send them back verbatim."""
    return _BAD_ID_CHARS.sub("_", upstream_id) if upstream_id else f"toolu_{uuid.uuid4().hex[:24]}"


def usage_out(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": max(0, u.input_tokens - u.cache_read_tokens - u.cache_write_tokens),
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
    }


def content_out(parts: list[Part]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, ThinkingPart):
            if p.redacted_data is not None:
                out.append({"type": "redacted_thinking", "data": p.redacted_data})
            elif p.text or p.signature:
                out.append({"type": "thinking", "thinking": p.text, "signature": p.signature or ""})
        elif isinstance(p, TextPart):
            if p.text:
                out.append({"type": "text", "text": p.text})
        elif isinstance(p, ToolCallPart):
            out.append({"type": "tool_use", "id": tool_use_id(p.id), "name": p.name, "input": tool_input(p.arguments)})
    return out


def render_response(resp: ChatResponse, model: str) -> dict[str, Any]:
    return {
        "id": message_id(resp.id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content_out(resp.content),
        "stop_reason": STOP_TO_ANTHROPIC[resp.stop_reason],
        "stop_sequence": resp.stop_sequence,
        "usage": usage_out(resp.usage),
    }
