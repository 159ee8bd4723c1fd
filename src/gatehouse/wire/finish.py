"""Why the model stopped, for a trace's `gen_ai.response.finish_reasons`: read from a forwarded
answer in its own dialect (the upstream's own words: `stop`, `end_turn`, `length`, ...), or
named from a translated answer's canonical stop reason. Only traced attempts read it
(gateway/relay.py): the pass-through path otherwise reads nothing of an answer but its usage.
"""
from __future__ import annotations

import msgspec

from gatehouse.types import StopReason
from gatehouse.wire.openai_response import usage_finish_decoder
from gatehouse.wire.responses_passthrough import body_finish


class _StopReason(msgspec.Struct):  # Anthropic messages
    stop_reason: str | None = None


class _DoneReason(msgspec.Struct):  # Ollama chat and generate
    done_reason: str | None = None


_stop_reason = msgspec.json.Decoder(_StopReason)
_done_reason = msgspec.json.Decoder(_DoneReason)


def _read(dialect: str, body: bytes) -> tuple[str, ...] | str | None:
    if dialect == "openai":  # (the OpenAI provider reads them with the usage: this is for the other passes)
        return usage_finish_decoder.decode(body).finish() or None
    if dialect == "anthropic":
        return _stop_reason.decode(body).stop_reason
    if dialect == "ollama":
        return _done_reason.decode(body).done_reason
    if dialect == "openai-responses":
        return body_finish(body)
    return None


# a translated answer's canonical stop reason, in the OpenAI names the GenAI conventions use
_CANONICAL: dict[str, tuple[str, ...]] = {
    "end": ("stop",), "stop_sequence": ("stop",), "length": ("length",), "tool_calls": ("tool_calls",),
    "content_filter": ("content_filter",), "error": ("error",),
}


def forwarded(dialect: str, body: bytes) -> tuple[str, ...] | None:
    """The finish reasons of a forwarded unary answer in `dialect` (None: none it could read)."""
    try:
        reason = _read(dialect, body)
    except (msgspec.DecodeError, RecursionError):
        return None
    return (reason,) if isinstance(reason, str) and reason else reason or None


def canonical(stop: StopReason | None) -> tuple[str, ...] | None:
    return _CANONICAL.get(stop) if stop else None
