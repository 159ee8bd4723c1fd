"""The Anthropic dialect's errors, both ways, in one place, with its one table of error types.

From an upstream that speaks it (Anthropic, or vLLM's / llama.cpp's /v1/messages): the gateway
error for an error answer or an in-stream `error` event, its type kept when allow-listed, its
text only in the operator's log (scrubbed; upstream/error_text.py).

To a client that speaks it: the body `{"type": "error", "error": {...}}`, the HTTP status its
clients expect (529 for overload), and the `event: error` frame a started stream ends with.
"""
from __future__ import annotations

from typing import Any

import msgspec

from gatehouse.errors import GatehouseError, UpstreamStatus, classify_upstream_status
from gatehouse.types import json_encode
from gatehouse.upstream.error_text import client_message, note, safe_kind, upstream_status

# Anthropic's documented error types and the HTTP status each stands for (overload is 529).
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
    "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
    "timeout_error": 504, "overloaded_error": 529,
}
# The other way: a gateway error's status -> the type Anthropic clients know.
TYPE_FOR_STATUS: dict[int, str] = {
    **{status: kind for kind, status in ERROR_STATUS.items()},
    405: "invalid_request_error", 415: "invalid_request_error", 502: "api_error", 503: "overloaded_error",
}
# Anthropic signals overload with 529 (its SDKs and Claude Code treat it as such).
_STATUS = {503: 529}

# ---- from an upstream ------------------------------------------------------------------------------


class _ErrorDetail(msgspec.Struct):
    type: Any = None


class _ErrorEnvelope(msgspec.Struct):
    error: _ErrorDetail | str | None = None


_envelope_decoder = msgspec.json.Decoder(_ErrorEnvelope)


def error_from_response(status: int, raw: bytes, headers: Any, model: str, url: str = "") -> GatehouseError:
    """The gateway error for an Anthropic error answer (also a 2xx whose body is an error)."""
    try:
        env = _envelope_decoder.decode(raw)
        kinds = (env.error.type,) if isinstance(env.error, _ErrorDetail) else ()
    except (msgspec.DecodeError, msgspec.ValidationError):
        kinds = ()
    return upstream_status(status, model, "anthropic", raw, kinds=kinds, headers=headers)


def stream_error(type_: str, message: str, model: str) -> UpstreamStatus:
    """An upstream `error` event as a gateway error of the status its type stands for."""
    status = ERROR_STATUS.get(type_, 500)
    note("anthropic", model, 0, f"{type_}: {message}")
    kind = safe_kind("anthropic", type_)
    return classify_upstream_status(status, client_message(model, status, kind, in_stream=True),
                                    upstream_type=kind)


# ---- to a client -------------------------------------------------------------------------------------


def status_for(err: GatehouseError) -> int:
    return _STATUS.get(err.status, err.status)


def body(err: GatehouseError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": TYPE_FOR_STATUS.get(err.status, "api_error"), "message": err.message}}


def stream_frame(message: str, type_: str = "api_error") -> bytes:
    """The `event: error` frame a started stream ends with (an unknown type becomes api_error)."""
    kind = type_ if type_ in ERROR_STATUS else "api_error"
    body = json_encode({"type": "error", "error": {"type": kind, "message": message}})
    return b"event: error\ndata: " + body + b"\n\n"
