"""Render the one error hierarchy in each client dialect."""
from __future__ import annotations

from typing import Any, Callable

from gatehouse.errors import GatehouseError
from gatehouse.types import json_encode


def openai_body(err: GatehouseError) -> dict[str, Any]:
    return {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}


# Anthropic's documented error types, by status.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
    415: "invalid_request_error", 429: "rate_limit_error", 500: "api_error", 502: "api_error",
    503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error",
}
# Anthropic signals overload with 529 (its SDKs and Claude Code treat it as such).
_ANTHROPIC_STATUS = {503: 529}


def anthropic_body(err: GatehouseError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": _ANTHROPIC_TYPES.get(err.status, "api_error"), "message": err.message}}


def ollama_body(err: GatehouseError) -> dict[str, Any]:
    return {"error": err.message}


RENDERERS: dict[str, Callable[[GatehouseError], dict[str, Any]]] = {
    "openai": openai_body,
    "anthropic": anthropic_body,
    "ollama": ollama_body,
}


def status_for(dialect: str, err: GatehouseError) -> int:
    """The HTTP status a dialect's clients expect for this error."""
    if dialect == "anthropic":
        return _ANTHROPIC_STATUS.get(err.status, err.status)
    return err.status


def render(dialect: str, err: GatehouseError) -> bytes:
    return json_encode(RENDERERS.get(dialect, openai_body)(err))
