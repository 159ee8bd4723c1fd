"""The Ollama dialect's errors, both ways, in one place. Ollama's errors are a bare message,
`{"error": "..."}`, without a type.

From an upstream Ollama: the gateway error for an error answer or an `{"error": ...}` line
in a stream (its text only in the operator's log, scrubbed; upstream/error_text.py).

To a client that speaks it: the body, and the NDJSON line a started stream ends with.
"""
from __future__ import annotations

from typing import Any

from gatehouse.errors import GatehouseError, UpstreamStatus, classify_upstream_status
from gatehouse.types import json_encode
from gatehouse.upstream.error_text import client_message, note, upstream_status

# ---- from an upstream ------------------------------------------------------------------------------


def error_from_response(status: int, raw: bytes, headers: Any, model: str, url: str = "") -> GatehouseError:
    """The gateway error for an Ollama error answer (also a 2xx whose body is an error)."""
    return upstream_status(status, model, "ollama", raw, headers=headers)


def stream_failure(line: bytes, model: str) -> UpstreamStatus:
    """An upstream's `{"error": ...}` line as a gateway error: its text only in the log."""
    note("ollama", model, 0, line)
    return classify_upstream_status(500, client_message(model, 500, None, in_stream=True))


# ---- to a client -------------------------------------------------------------------------------------


def body(err: GatehouseError) -> dict[str, Any]:
    return {"error": err.message}


def stream_line(message: str) -> bytes:
    """The line a started stream ends with when it fails (without its newline)."""
    return json_encode({"error": message})


def stream_frame(message: str, type_: str = "api_error") -> bytes:
    return stream_line(message) + b"\n"
