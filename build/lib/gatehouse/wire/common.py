"""Helpers shared by the wire modules: validation errors that name the param."""
from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from gatehouse.errors import InvalidRequest

T = TypeVar("T")

_AT = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.S)
_json_decode = msgspec.json.Decoder().decode


def decode_json_object(body: bytes) -> dict[str, Any]:
    try:
        obj = _json_decode(body)
    except msgspec.DecodeError as e:
        raise InvalidRequest(f"Request body is not valid JSON: {e}", code="invalid_json") from None
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


# Fields by which a client could choose its own upstream or credentials. The upstream is
# chosen by config only, so these are refused wherever they appear - except inside JSON
# schemas, where a tool may legitimately have a parameter called `headers`, and inside the
# arguments of a tool call in the history (Anthropic `tool_use.input`), which the model wrote.
FORBIDDEN_FIELDS = frozenset({"api_base", "base_url", "api_key", "headers"})
_FORBIDDEN_BYTES = tuple(f'"{f}"'.encode() for f in FORBIDDEN_FIELDS)
_SCHEMA_KEYS = frozenset({"parameters", "input_schema", "schema", "json_schema", "properties", "input"})


def refuse_upstream_overrides(raw: bytes, obj: dict[str, Any]) -> None:
    # Fast pre-check on the bytes: most bodies never mention these names at all.
    if not any(b in raw for b in _FORBIDDEN_BYTES):
        return
    found = _find_forbidden(obj, "")
    if found:
        raise InvalidRequest(
            f"Field '{found}' is not allowed: the upstream is chosen by the gateway's configuration.",
            param=found,
            code="forbidden_field",
        )


def _find_forbidden(node: Any, path: str) -> str | None:
    if isinstance(node, dict):
        for k, v in node.items():
            here = f"{path}.{k}" if path else str(k)
            if k in FORBIDDEN_FIELDS:
                return here
            if k in _SCHEMA_KEYS:
                continue
            hit = _find_forbidden(v, here)
            if hit:
                return hit
    elif isinstance(node, list):
        for i, v in enumerate(node):
            hit = _find_forbidden(v, f"{path}[{i}]")
            if hit:
                return hit
    return None


def tool_input(arguments: str) -> dict[str, Any]:
    """Tool call arguments (JSON text) as the object that Bedrock, Gemini and Ollama want."""
    try:
        value = _json_decode(arguments or "{}")
    except msgspec.DecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest("Tool call arguments must be a JSON object.", param="messages",
                             code="invalid_tool_arguments")
    return value
