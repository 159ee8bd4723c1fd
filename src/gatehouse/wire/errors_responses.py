"""The Responses API's errors, in one place.

Before a stream starts, a Responses client gets the OpenAI error body (wire/errors_openai.py);
a started stream ends with `response.failed`, whose response object carries the error below
(wire/responses_render.py builds the rest of that event).
"""
from __future__ import annotations

from typing import Any

from gatehouse.errors import GatehouseError
from gatehouse.wire import errors_openai


def body(err: GatehouseError) -> dict[str, Any]:
    return errors_openai.body(err)


def failure(message: str, type_: str = "api_error") -> dict[str, Any]:
    """The `error` of a failed response: the two codes Responses clients tell apart."""
    return {"code": "rate_limit_exceeded" if type_ == "rate_limit_error" else "server_error", "message": message}
