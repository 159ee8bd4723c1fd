"""Render the one error hierarchy at the edge, in the client's dialect.

Each dialect's body (and the stream error frame next to it) lives in wire/errors_<dialect>.py;
this module only picks the dialect's renderer. An unknown dialect gets the OpenAI body.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gatehouse.errors import GatehouseError
from gatehouse.types import json_encode
from gatehouse.wire import errors_anthropic, errors_ollama, errors_openai

RENDERERS: dict[str, Callable[[GatehouseError], dict[str, Any]]] = {
    "openai": errors_openai.body,
    "anthropic": errors_anthropic.body,
    "ollama": errors_ollama.body,
}


def status_for(dialect: str, err: GatehouseError) -> int:
    """The HTTP status a dialect's clients expect for this error."""
    if dialect == "anthropic":
        return errors_anthropic.status_for(err)
    return err.status


def render(dialect: str, err: GatehouseError) -> bytes:
    return json_encode(RENDERERS.get(dialect, errors_openai.body)(err))
