"""What of a client's request body may reach an upstream: screened once, on the decoded body.

The upstream, its credentials and its request headers are chosen by the gateway's config
only. A client body is screened before anything reads it:

- Top level: only the fields the dialect's endpoint defines (its `BodySpec`) are kept; any
  other field is dropped (after the nested check below: what it holds is refused, not hidden),
  so it is neither forwarded on the pass-through path nor carried
  as an extra on the translated one. A field that names an upstream override - the
  gateway's own `api_base`/`base_url`/`api_key`/`headers` or another gateway's spelling
  (`extra_headers`, `azure_endpoint`, `API_BASE`, `apiBase`, `baseURL`, ...) - is refused
  with 400 `forbidden_field` rather than dropped, so a client learns it has no effect.
  Names are compared decoded (a JSON escape such as `api\\u005fbase` is the same key) and
  without regard to case, `_` or `-`.
- Nested: every object in the kept fields is checked for the same names (their usual
  spellings), however deep and under whatever key. Only positions the dialect defines as
  data are exempt: the property names of a JSON Schema (a tool may well have a parameter
  called `headers`) and its literal values (`default`, `enum`, ...), and the arguments of
  a tool call in the history, which a model wrote.
- Depth: a body nested deeper than MAX_DEPTH is refused (400), before anything recurses
  over it.

The nested walk is one pass in C-backed set operations per object (`isdisjoint`), about
1 us per KiB of a typical chat body.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gatehouse.errors import InvalidRequest

MAX_DEPTH = 64

# Request fields by which LiteLLM, the OpenAI/Azure SDKs, Vertex, Bedrock and similar
# gateways let a caller pick the upstream, its credentials or extra request headers/query.
OVERRIDE_FIELDS = (
    "api_base", "base_url", "api_key", "headers", "extra_headers", "extra_query", "extra_body",
    "azure_endpoint", "azure_ad_token", "api_version", "api_type", "custom_llm_provider",
    "vertex_credentials", "vertex_project", "vertex_location", "aws_region_name", "aws_access_key_id",
    "aws_secret_access_key", "aws_session_token", "aws_profile_name", "aws_bedrock_runtime_endpoint",
    "api_host", "organization",
)


def _norm(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def _spellings(field: str) -> set[str]:
    words = field.split("_")
    camel = words[0] + "".join(w.capitalize() for w in words[1:])
    pascal = "".join(w.capitalize() for w in words)
    forms = {field, field.upper(), "".join(words), "".join(words).upper(), "-".join(words), camel, pascal}
    forms |= {f.replace("Url", "URL").replace("Id", "ID") for f in (camel, pascal)}
    return forms


_OVERRIDES = frozenset(_norm(f) for f in OVERRIDE_FIELDS)
_OVERRIDE_SPELLINGS = frozenset(s for f in OVERRIDE_FIELDS for s in _spellings(f))

# The shape of a body: key -> shape of its value; "*" -> shape of list items; SCHEMA marks a
# JSON Schema, DATA a value whose keys are data (tool arguments).
SCHEMA, DATA = "schema", "data"
Shape = dict[str, "Shape"] | str | None
_SCHEMA_NAME_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_SCHEMA_LITERALS = frozenset({"default", "const", "enum", "examples", "example"})


class BodySpec:
    """An endpoint's body: the top-level fields it defines, and where schemas and data sit."""

    __slots__ = ("fields", "shape")

    def __init__(self, fields: Iterable[str], shape: dict[str, Shape] | None = None):
        self.fields = frozenset(fields)
        self.shape: dict[str, Shape] = shape or {}


class _Found(Exception):
    """A forbidden key (or too deep a body); `path` grows as it propagates up."""

    def __init__(self, path: str, deep: bool = False):
        self.path = path
        self.deep = deep


def screen_body(obj: dict[str, Any], spec: BodySpec) -> None:
    """Refuse upstream overrides and over-deep bodies; drop top-level fields `spec` does not
    define (in place: the pass-through path forwards `obj`)."""
    fields, shape = spec.fields, spec.shape
    drop = None
    try:
        for key, value in obj.items():
            if key not in fields:
                if _norm(key) in _OVERRIDES:
                    raise _Found(key)
                drop = [key] if drop is None else [*drop, key]
            if type(value) is dict or type(value) is list:  # (a dropped field too: refused, not hidden)
                try:
                    _walk(value, shape.get(key), 2)
                except _Found as e:
                    e.path = key + e.path
                    raise
    except _Found as e:
        if e.deep:
            raise InvalidRequest(f"Request body is nested more than {MAX_DEPTH} levels deep.",
                                 code="invalid_json") from None
        raise _forbidden(e.path) from None
    for key in drop or ():
        del obj[key]


def _forbidden(path: str) -> InvalidRequest:
    return InvalidRequest(
        f"Field '{path}' is not allowed: the upstream and its credentials are chosen by the "
        "gateway's configuration.", param=path, code="forbidden_field")


def _walk(node: Any, shape: Shape, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _Found("", deep=True)
    if type(node) is list:
        item = shape.get("*") if type(shape) is dict else shape
        for i, v in enumerate(node):
            if type(v) is dict or type(v) is list:
                try:
                    _walk(v, item, depth + 1)
                except _Found as e:
                    e.path = f"[{i}]{e.path}"
                    raise
        return
    if shape is SCHEMA:
        return _walk_schema(node, depth)
    if shape is not DATA and not _OVERRIDE_SPELLINGS.isdisjoint(node):
        raise _Found("." + next(k for k in node if k in _OVERRIDE_SPELLINGS))
    sub = shape if type(shape) is dict else None
    for k, v in node.items():
        if type(v) is dict or type(v) is list:
            try:
                _walk(v, DATA if shape is DATA else sub.get(k) if sub else None, depth + 1)
            except _Found as e:
                e.path = f".{k}{e.path}"
                raise


def _walk_schema(node: dict[str, Any], depth: int, names: bool = False) -> None:
    """A JSON Schema object (or, with `names`, a map of property names to schemas)."""
    if not names and not _OVERRIDE_SPELLINGS.isdisjoint(node):
        raise _Found("." + next(k for k in node if k in _OVERRIDE_SPELLINGS))
    for k, v in node.items():
        if type(v) is dict:
            if not names and k in _SCHEMA_LITERALS:
                _walk(v, DATA, depth + 1)
                continue
            try:
                if depth + 1 > MAX_DEPTH:
                    raise _Found("", deep=True)
                _walk_schema(v, depth + 1, names=not names and k in _SCHEMA_NAME_MAPS)
            except _Found as e:
                e.path = f".{k}{e.path}"
                raise
        elif type(v) is list:
            try:
                _walk(v, DATA if k in _SCHEMA_LITERALS else SCHEMA, depth + 1)
            except _Found as e:
                e.path = f".{k}{e.path}"
                raise
