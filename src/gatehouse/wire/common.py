"""Helpers shared by the wire modules: validation errors that name the param, the frame-counting
usage fallback of the pass-through relays."""
from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta

from gatehouse.errors import InvalidRequest
from gatehouse.types import Usage

T = TypeVar("T")

_AT = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.S)
_json_decode = msgspec.json.Decoder().decode

# Numeric request fields, checked at the edge on every route (sign and range): a negative
# max_tokens must never reach an upstream or an admission estimate.
_INT_MAX = 2**31 - 1
Count = Annotated[int, Meta(ge=1, le=_INT_MAX)]  # max_tokens, n, dimensions, ...
NonNegative = Annotated[int, Meta(ge=0, le=_INT_MAX)]
TopK = Annotated[int, Meta(ge=-1, le=_INT_MAX)]  # -1: no top-k (vLLM)
Unit = Annotated[float, Meta(ge=0, le=1)]  # top_p, min_p, ...
Temperature = Annotated[float, Meta(ge=0, le=2)]
Penalty = Annotated[float, Meta(ge=-2, le=2)]  # presence_penalty, frequency_penalty
Positive = Annotated[float, Meta(gt=0, le=1e6)]  # repetition_penalty
Seed = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
LogitBias = dict[str, Annotated[float, Meta(ge=-100, le=100)]]


def decode_json_object(body: bytes) -> dict[str, Any]:
    try:
        obj = _json_decode(body)
    except msgspec.DecodeError as e:
        raise InvalidRequest(f"Request body is not valid JSON: {e}", code="invalid_json") from None
    except RecursionError:  # msgspec's decoder stops at the interpreter's recursion limit
        raise InvalidRequest("Request body is nested too deeply.", code="invalid_json") from None
    if not isinstance(obj, dict):
        raise InvalidRequest("Request body must be a JSON object.", code="invalid_json")
    return obj


def convert(obj: dict[str, Any], typ: type[T]) -> T:
    """Validate a decoded body into a wire struct; errors name the offending param."""
    try:
        return msgspec.convert(obj, typ)
    except msgspec.ValidationError as e:
        raise invalid_from_validation(e) from None


def invalid_from_validation(e: msgspec.ValidationError) -> InvalidRequest:
    m = _AT.match(str(e))
    assert m is not None
    message, where = m.group(1).replace("`", "'"), (m.group(2) or "").lstrip(".")
    if message.startswith("Object missing required field"):
        name = message.split("field", 1)[1].strip().strip("'")
        where = f"{where}.{name}" if where else name
        message = "required field is missing"
    elif message.startswith("Expected"):
        message = message[0].lower() + message[1:]
    param = where or None
    text = f"Invalid value for '{param}': {message}" if param else f"Invalid request: {message}"
    return InvalidRequest(text, param=param, code="invalid_value")


def tool_input(arguments: str) -> dict[str, Any]:
    """Tool call arguments (JSON text) as the object that Bedrock, Gemini and Ollama want."""
    try:
        value = _json_decode(arguments or "{}")
    except (msgspec.DecodeError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest("Tool call arguments must be a JSON object.", param="messages",
                             code="invalid_tool_arguments")
    return value


class FrameCountingTally:
    """For a relay that counts the content frames it passes on (`frames`) and reads the usage
    the upstream reports (`usage`): what to bill when the stream was cut before that report."""

    usage: Usage | None
    frames: int

    def final_usage(self, prompt_estimate: int) -> Usage:
        """The upstream's usage, else ~one output token per content frame relayed, estimated."""
        if self.usage is not None:
            return self.usage
        return Usage(input_tokens=prompt_estimate, output_tokens=self.frames, estimated=True)
