"""The OpenAI dialect's errors, both ways, in one place.

From an upstream that speaks it (OpenAI, vLLM, TGI, llama.cpp, FastAPI servers): the error
type/code its body names, and the gateway error for an error answer or an in-stream error
(the upstream's text only in the operator's log, scrubbed; upstream/error_text.py).

To a client that speaks it: the error body `{"error": {...}}` and the SSE error frame a
stream ends with once it has started.
"""
from __future__ import annotations

from typing import Any

import msgspec

from gatehouse.errors import GatehouseError, UpstreamStatus, classify_upstream_status
from gatehouse.types import json_encode
from gatehouse.upstream.error_text import client_message, first_kind, note, safe_kind, upstream_status

# ---- from an upstream ------------------------------------------------------------------------------


class _ErrorDetail(msgspec.Struct):
    type: Any = None
    code: Any = None


class _ErrorEnvelope(msgspec.Struct):
    error: _ErrorDetail | str | None = None
    type: Any = None  # TGI: {"error": "...", "error_type": "..."}; some servers put it at the top
    error_type: Any = None


_envelope_decoder = msgspec.json.Decoder(_ErrorEnvelope)


def error_kinds(raw: bytes) -> tuple[str | None, ...]:
    """The error type and code an upstream error body names (OpenAI, vLLM, TGI, FastAPI), to be
    checked against the allow-list; the message text itself is never shown to the client."""
    try:
        env = _envelope_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ()
    names = [env.type, env.error_type]
    if isinstance(env.error, _ErrorDetail):
        names += [env.error.type, env.error.code]
    return tuple(n for n in names if isinstance(n, str))


def error_from_response(status: int, raw: bytes, headers: Any, model: str, url: str = "") -> GatehouseError:
    """The gateway error for an OpenAI-dialect error answer (also a 2xx whose body is an error)."""
    return upstream_status(status, model, "openai", raw, kinds=error_kinds(raw), headers=headers)


def stream_failure(data: bytes, kinds: tuple[Any, ...], model: str) -> UpstreamStatus:
    """An upstream's in-stream error as a gateway error: its type/code (`kinds`) kept when
    allow-listed, its text only in the operator's log (scrubbed)."""
    note("openai", model, 0, data)
    return classify_upstream_status(500, client_message(model, 500, safe_kind("openai", *kinds), in_stream=True),
                                    upstream_type=first_kind("openai", kinds))


# ---- to a client -------------------------------------------------------------------------------------


def body(err: GatehouseError) -> dict[str, Any]:
    return {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}


def error_event(message: str, type_: str, code: str | None = None) -> bytes:
    """An SSE `data:` line carrying the error, without the blank line that ends the frame."""
    return b"data: " + json_encode({"error": {"message": message, "type": type_, "param": None, "code": code}})


def stream_frame(message: str, type_: str = "upstream_error") -> bytes:
    """The frame a started stream ends with when it fails."""
    return error_event(message, type_) + b"\n\n"
