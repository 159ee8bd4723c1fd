"""Why the model stopped, for a trace's `gen_ai.response.finish_reasons`: read from a forwarded
answer in its own dialect (the upstream's own words: `stop`, `end_turn`, `length`, ...), or
named from a translated answer's canonical stop reason. Only traced attempts read it
(gateway/relay.py): the pass-through path otherwise reads nothing of an answer but its usage.
"""
from __future__ import annotations

import msgspec

from gatehouse.types import StopReason


class _Choice(msgspec.Struct):
    finish_reason: str | None = None


class _Choices(msgspec.Struct):  # OpenAI chat and text completions
    choices: list[_Choice] = []


class _StopReason(msgspec.Struct):  # Anthropic messages
    stop_reason: str | None = None


class _DoneReason(msgspec.Struct):  # Ollama chat and generate
    done_reason: str | None = None


class _Incomplete(msgspec.Struct):
    reason: str | None = None


class _Status(msgspec.Struct):  # OpenAI Responses
    status: str | None = None
    incomplete_details: _Incomplete | None = None


_choices = msgspec.json.Decoder(_Choices)
_stop_reason = msgspec.json.Decoder(_StopReason)
_done_reason = msgspec.json.Decoder(_DoneReason)
_status = msgspec.json.Decoder(_Status)


def _read(dialect: str, body: bytes) -> tuple[str, ...] | str | None:
    if dialect == "openai":
        return tuple(c.finish_reason for c in _choices.decode(body).choices if c.finish_reason) or None
    if dialect == "anthropic":
        return _stop_reason.decode(body).stop_reason
    if dialect == "ollama":
        return _done_reason.decode(body).done_reason
    if dialect == "openai-responses":
        r = _status.decode(body)
        return r.incomplete_details.reason if r.incomplete_details is not None and r.incomplete_details.reason \
            else r.status
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
