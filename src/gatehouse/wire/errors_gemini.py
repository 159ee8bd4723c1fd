"""Gemini's errors (Google API errors) mapped onto the gateway's, in one place: error answers
and the `error` object a stream chunk may carry alike.

Google's message text goes to the operator's log only (scrubbed); the client sees the status
name when it is on the allow-list (upstream/error_text.py). Gemini is only ever an upstream:
no client speaks this dialect, so nothing is rendered here.
"""
from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct

from gatehouse.errors import GatehouseError, UpstreamTimeout, classify_upstream_status
from gatehouse.upstream.error_text import note, retry_after, safe_kind
from gatehouse.wire.gemini import GError


class GErrorEnvelope(Struct):
    error: GError | None = None


def gemini_error(status: int, err: GError | None, model: str, headers: Any = None) -> GatehouseError:
    """Map a Google API error to ours. Google's message text goes to the operator's log only
    (scrubbed); the client sees the status name when it is a known one."""
    if err is None:
        return classify_upstream_status(status, f"Gemini failed for model '{model}' ({status}).",
                                        headers=retry_after(headers))
    kind = err.status
    note("gemini", model, status, f"{kind}: {err.message}")
    safe = safe_kind("gemini", kind)
    named = f" ({safe})" if safe else ""
    if any(d.reason == "API_KEY_INVALID" for d in err.details) or kind in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        return classify_upstream_status(
            403, f"Gemini did not accept the gateway's credentials for model '{model}'{named}.",
            upstream_type=safe, code="upstream_auth_failed")
    if kind == "NOT_FOUND" or status == 404:
        return classify_upstream_status(502, f"Gemini does not know the model configured for '{model}'{named}.",
                                        upstream_type=safe, code="upstream_model_not_found")
    if kind == "DEADLINE_EXCEEDED" or status == 504:
        return UpstreamTimeout(f"Gemini timed out for model '{model}'{named}.")
    delay = next((d.retryDelay for d in err.details if d.retryDelay), None)
    if kind == "RESOURCE_EXHAUSTED" or status == 429:
        return classify_upstream_status(429, f"Gemini is rate limiting model '{model}'{named}.",
                                        upstream_type=safe, headers=retry_after(headers, delay))
    if kind == "UNAVAILABLE" or status == 503:
        return classify_upstream_status(503, f"Gemini is unavailable for model '{model}'{named}.",
                                        upstream_type=safe, headers=retry_after(headers, delay))
    if kind in ("INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE") or status == 400:
        return classify_upstream_status(400, f"Gemini rejected the request for model '{model}'{named}.",
                                        upstream_type=safe)
    return classify_upstream_status(status if status >= 500 else 502, f"Gemini failed for model '{model}'{named}.",
                                    upstream_type=safe)


def error_from_response(status: int, raw: bytes, headers: Any, model: str, url: str = "") -> GatehouseError:
    """The gateway error for a Gemini error answer (`{"error": {code, message, status, details}}`)."""
    try:
        env = msgspec.json.decode(raw, type=GErrorEnvelope)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        env = GErrorEnvelope()
    if env.error is None:
        note("gemini", model, status, raw)
    return gemini_error(status, env.error, model, headers)

