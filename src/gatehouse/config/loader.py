"""Loading a config: YAML, ${VAR} interpolation, typed conversion, then the checks.

Each step fails with a ConfigError naming the field: interpolation names the field whose
variable is missing; msgspec's validation error (wrong type, unknown field, a Meta bound, a
struct's `__post_init__` rule) is worded here with the field's path; check.py's rules name
theirs.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

import msgspec
import yaml

from gatehouse.config.check import check
from gatehouse.config.schema import PATTERN_RULES, Config, ConfigError, ProviderConfig, UpstreamConfig

# ---- interpolation -------------------------------------------------------------------

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _interpolate_str(value: str, path: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        got = env.get(name)
        if got is None or (got == "" and default is not None):
            if default is None:
                raise ConfigError(f"{path}: environment variable {name} is not set")
            return str(default)
        return got

    return _VAR.sub(sub, value)


def interpolate(node: Any, env: dict[str, str], path: str = "") -> Any:
    if isinstance(node, str):
        return _interpolate_str(node, path or "<root>", env)
    if isinstance(node, dict):
        return {k: interpolate(v, env, _join(path, str(k))) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env, f"{path}[{i}]") for i, v in enumerate(node)]
    return node


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ---- msgspec errors in words, with the field path ------------------------------------------

_MSGSPEC_PATH = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.S)
_FIELD_RULE = re.compile(r"^([a-z_][a-z0-9_]*): (.*)$", re.S)  # a __post_init__ ValueError: "field: why"
_BOUND = re.compile(r"^Expected `(int|float)` (>=|>|<=|<) (-?[0-9.e+-]+)$")
# What 0 means where a field may be 0, appended to "must not be negative".
_ZERO_MEANS = {"failure_threshold": "0 = never eject", "max_in_flight": "0 = no cap"}
_PROVIDER_TYPES: dict[str, type[UpstreamConfig]] = {
    str(cls.__struct_config__.tag): cls for cls in get_args(ProviderConfig)}


def _number(text: str) -> str:
    value = float(text)
    return str(int(value)) if value.is_integer() else text


def _bound(kind: str, op: str, limit: str, field_name: str) -> str:
    n = _number(limit)
    if (op == ">" and n == "0") or (op == ">=" and n == "1" and kind == "int"):
        return "must be positive"
    if op == ">=" and n == "0":
        zero = _ZERO_MEANS.get(field_name)
        return "must not be negative" + (f" ({zero})" if zero else "")
    words = {">=": "at least", ">": "more than", "<=": "at most", "<": "less than"}[op]
    return f"must be {words} {n}"


def _msgspec_message(err: msgspec.ValidationError) -> str:
    m = _MSGSPEC_PATH.match(str(err))
    assert m is not None
    message, where = m.group(1), (m.group(2) or "").lstrip(".")
    rule = _FIELD_RULE.match(message)
    bound = _BOUND.match(message)
    if rule:
        where, message = _join(where, rule.group(1)), rule.group(2)
    elif bound:
        message = _bound(bound.group(1), bound.group(2), bound.group(3), where.rpartition(".")[2])
    elif message.startswith("Expected `str` matching regex "):
        pattern = next((p for p in PATTERN_RULES if message.endswith(repr(p))), None)
        message = PATTERN_RULES[pattern] if pattern else message.replace("`", "'").replace("Expected", "expected")
    elif message.startswith("Object contains unknown field"):
        message = "unknown field " + message.split("field", 1)[1].strip().replace("`", "'")
    elif message.startswith("Object missing required field"):
        name = message.split("field", 1)[1].strip().strip("`")
        where = _join(where, name)
        message = "required field is missing"
    else:
        message = message.replace("`", "'")
        message = message[0].lower() + message[1:]
    return f"{where}: {message}" if where else message


_STEP = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _inner(tp: Any) -> Any:
    """The container or struct type inside Annotated[...] and `X | None`."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, UnionType) and type(None) in get_args(tp):
            rest = [a for a in get_args(tp) if a is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp


def _step(tp: Any, node: Any, token: re.Match[str]) -> tuple[Any, Any] | None:
    """One step down the path: (its type, its raw value), or None when the tree differs."""
    tp = _inner(tp)
    name, index = token.group(1), token.group(2)
    if name is not None and isinstance(node, dict) and isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        if name not in node:
            return None
        hints = get_type_hints(tp, include_extras=True)
        if name not in hints:  # a tagged union member's field: resolved by the member, below
            return None
        return hints[name], node[name]
    if index is not None and isinstance(node, list) and get_origin(tp) is list and int(index) < len(node):
        return get_args(tp)[0], node[int(index)]
    return None


def _name_map_keys(message: str, raw: dict[str, Any]) -> str:
    """msgspec says `groups[...]` for an entry of a map (at any depth); find which entry and
    name it: the first entry, in order, that fails on its own is the one msgspec stopped at."""
    where, sep, what = message.partition(": ")
    if "[...]" not in where:
        return message
    tp: Any = Config
    node: Any = raw
    named = ""
    pieces = where.split("[...]")
    for piece in pieces[:-1]:
        for token in _STEP.finditer(piece):
            step = _step(tp, node, token)
            if step is None:
                return message
            tp, node = step
        tp = _inner(tp)
        if get_origin(tp) is not dict or not isinstance(node, dict):
            return message
        value_type = get_args(tp)[1]
        key = next((k for k, v in node.items() if not _converts(v, value_type)), None)
        if key is None:
            return message
        named += f"{piece}.{key}"
        tp, node = value_type, node[key]
        if tp == ProviderConfig and isinstance(node, dict):  # go on with the member its `type` names
            tp = _PROVIDER_TYPES.get(str(node.get("type")), tp)
    message = f"{named}{pieces[-1]}{sep}{what}"
    if pieces[-1] in ("", ".type") and (tp == ProviderConfig or tp in _PROVIDER_TYPES.values()):
        return _provider_detail(message, node)
    return message


def _converts(value: Any, tp: Any) -> bool:
    try:
        msgspec.convert(value, tp, str_keys=True)
    except msgspec.ValidationError:
        return False
    return True


def _provider_detail(message: str, raw: Any) -> str:
    """A provider's unknown type, or a field of another provider type, said as such."""
    if not isinstance(raw, dict):
        return message
    where, _, what = message.partition(": ")
    kind = raw.get("type")
    if where.endswith(".type") and what.startswith("invalid value"):
        return f"{where}: unknown provider type '{kind}' (known: {', '.join(sorted(_PROVIDER_TYPES))})"
    own = _PROVIDER_TYPES.get(kind) if isinstance(kind, str) else None
    if own is None or not what.startswith("unknown field '"):
        return message
    name = what.removeprefix("unknown field '").removesuffix("'")
    others = sorted(t for t, cls in _PROVIDER_TYPES.items() if name in cls.__struct_fields__)
    if not others:
        return message
    hint = own.unused_hints.get(name)
    return f"{where}.{name}: not used by {kind}" + (f"; {hint}" if hint else f" (only by type {', '.join(others)})")


# ---- loading ---------------------------------------------------------------------------------


def decode(raw: Any, env: dict[str, str] | None = None) -> Config:
    """The typed config from a YAML tree, every field's own rules applied (no cross-section checks)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the config file must be a mapping at the top level")
    raw = interpolate(raw, dict(os.environ) if env is None else env)
    _adapters_without_deployments(raw)
    try:
        return msgspec.convert(raw, Config, str_keys=True)
    except msgspec.ValidationError as e:
        raise ConfigError(_name_map_keys(_msgspec_message(e), raw)) from None


def _adapters_without_deployments(raw: dict[str, Any]) -> None:
    """A LoRA adapter model leaves `deployments` out: its base's are filled in by the first
    check (config/adapters.py); any other model must list its own."""
    models = raw.get("models")
    if isinstance(models, list):
        for m in models:
            if isinstance(m, dict) and m.get("adapter") is not None and "deployments" not in m:
                m["deployments"] = []


def from_mapping(raw: Any, env: dict[str, str] | None = None) -> Config:
    """The typed, checked config from a YAML tree (`env`: for ${VAR}s, default os.environ)."""
    cfg = decode(raw, env)
    check(cfg)
    return cfg


def load(path: str | Path, env: dict[str, str] | None = None) -> Config:
    return load_with_digest(path, env)[0]


def load_with_digest(path: str | Path, env: dict[str, str] | None = None) -> tuple[Config, str]:
    """The config and the sha256 (hex) of the file's bytes as read, so a reload can say which
    file is live without reading it twice."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    return _parse(p, text, env), digest


def _parse(p: Path, text: str, env: dict[str, str] | None) -> Config:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{p}: invalid YAML{where}: {getattr(e, 'problem', e)}") from None
    return from_mapping(raw, env)
