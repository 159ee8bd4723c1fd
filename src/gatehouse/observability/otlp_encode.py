"""OTLP trace export bodies, encoded by hand from the gateway's own span tuples.

Why by hand: the OpenTelemetry SDK builds a Python object per span, attribute and event, then
its exporter builds protobuf messages from them — ~100 µs of one core per traced request, half
the gateway's budget. Here a span is one tuple (`Span`) and a batch of them becomes an
ExportTraceServiceRequest in one pass: protobuf (OTLP/HTTP `application/x-protobuf` and the
gRPC TraceService/Export body, which are the same bytes) or OTLP/JSON (`application/json`,
ids as hex, 64-bit integers as decimal strings, as the OTLP spec's JSON mapping says). Attribute
values repeat (models, consumers, deployments, statuses), so encoded attributes are kept in
bounded caches: a span's fixed values per distinct combination, each varying value per key.
Each span is encoded on its own and a batch wrapped in one join (`wrap`). `span` takes the
generic `Span` tuple (the reference, and what the tests feed in); the export thread's fast path
(otlp_items.py) builds the same bytes from the request path's queued items through the same
caches (`heads`, `ints`, `float_heads`) without building that tuple. The tests parse both with
the generated opentelemetry-proto classes and compare the two paths byte for byte
(tests/observability/).

Field numbers: opentelemetry/proto/{collector/trace/v1/trace_service,trace/v1/trace,
common/v1/common,resource/v1/resource}.proto.
"""
from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from typing import Any

import msgspec

AttrValue = str | bool | int | float | tuple[str, ...]  # a tuple: an array of strings
# (trace_id, span_id, parent span_id or 0 (integers: 128, 64, 64 bits), name, kind (1 INTERNAL, 2 SERVER, 3 CLIENT),
#  start ns, end ns, fixed values, varying values, first-token event ns or None, status ERROR).
# The attribute keys are the kind's Layout; a None value is left out. "Fixed" values repeat
# from request to request (model, consumer, deployment...): all of them are encoded once per
# distinct combination. "Varying" ones (tokens, cost, status) are encoded one by one.
Span = tuple[int, int, int, str, int, int, int, tuple[AttrValue | None, ...], tuple[AttrValue | None, ...],
             int | None, bool]
Layout = tuple[tuple[str, ...], tuple[str, ...]]  # (fixed keys, varying keys)
FIRST_TOKEN = "gen_ai.first_token"

_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_LOW64 = (1 << 64) - 1


def _varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return bytes((n,))
    if 0 < n < 0x4000:  # a span's length: two bytes
        return bytes((n & 0x7F | 0x80, n >> 7))
    if n < 0:
        n += 1 << 64  # int64 as protobuf sends it: ten bytes of two's complement
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(tag << 3 | 2) + _varint(len(payload)) + payload


def _any_value(v: AttrValue) -> bytes:
    if isinstance(v, str):
        s = v.encode()
        return b"\x0a" + _varint(len(s)) + s  # string_value = 1
    if isinstance(v, tuple):  # array_value = 5: ArrayValue{values = 1}
        return _field(5, b"".join(_field(1, _any_value(x)) for x in v))
    if isinstance(v, bool):
        return b"\x10\x01" if v else b"\x10\x00"  # bool_value = 2
    if isinstance(v, int):
        return b"\x18" + _varint(v)  # int_value = 3
    return b"\x21" + _pack_double(v)  # double_value = 4


_CACHE_MAX = 8192  # encoded values kept per cache; models, consumers and statuses repeat
_ids = struct.Struct(">HQQHQ").pack  # Span.trace_id = 1 (16 bytes), span_id = 2 (8 bytes), big-endian as in hex
_ids_parent = struct.Struct(">HQQHQHQ").pack  # ... and parent_span_id = 4
_times = struct.Struct("<BQBQ").pack  # Span.start_time_unix_nano = 7, end_time_unix_nano = 8 (fixed64)
_FIRST_TOKEN_EVENT = b"\x5a\x1d\x09%s\x12\x12" + FIRST_TOKEN.encode()  # Span.events = 11: Event{time = 1, name = 2}
_ERROR = b"\x7a\x02\x18\x02"  # Span.status = 15: Status{code = 3: ERROR}
# ScopeSpans.spans = 2 and a span's length, for the usual lengths (a span is a few hundred bytes)
_SPAN_HEAD = tuple(b"\x12" + _varint(n) for n in range(2048))


class _Encoder(ABC):
    """What both formats share. A span is `assemble(ids, head, times, attrs, event, error)`:
    `head` holds its name, kind and fixed attributes, kept per distinct combination in
    `heads[kind]` (`span` keys them by (name, fixed values); otlp_items.py by the values it
    reads them from); `attrs` are its varying attributes: an int from `ints[kind][i]` (by value),
    a float as `float_heads[kind][i]` + the value (a double's head is the same for every value),
    anything else by type and value (True == 1 == 1.0, but each keeps its own type)."""

    def __init__(self, layouts: dict[int, Layout]):
        self.layouts = layouts
        self.heads: dict[int, dict[Any, Any]] = {k: {} for k in layouts}
        self.ints: dict[int, tuple[dict[int, bytes], ...]] = {
            k: tuple({} for _ in layout[1]) for k, layout in layouts.items()}
        self.float_heads: dict[int, tuple[bytes, ...]] = {
            k: tuple(self._float_head(key) for key in layout[1]) for k, layout in layouts.items()}
        self._others: dict[tuple[int, int, type, AttrValue], bytes] = {}

    # per format (ProtobufEncoder, JsonEncoder)
    @abstractmethod
    def _attr(self, key: str, value: AttrValue) -> bytes: ...

    @abstractmethod
    def _float_head(self, key: str) -> bytes: ...

    @abstractmethod
    def _head(self, kind: int, name: str, fixed: tuple[AttrValue | None, ...]) -> Any: ...

    @abstractmethod
    def float_attr(self, kind: int, i: int, v: float) -> bytes: ...

    @abstractmethod
    def assemble(self, trace_id: int, span_id: int, parent: int, head: Any, start: int, end: int,
                 attrs: list[bytes], event: int | None, error: bool) -> bytes: ...

    @abstractmethod
    def wrap(self, spans: list[bytes]) -> bytes: ...

    def head(self, kind: int, key: Any, name: str, fixed: tuple[AttrValue | None, ...]) -> Any:
        """Encode a head and keep it under `key` (a miss of `heads[kind]`)."""
        cache = self.heads[kind]
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        h = cache[key] = self._head(kind, name, fixed)
        return h

    def int_attr(self, kind: int, i: int, v: int) -> bytes:
        """Encode an int attribute and keep it (a miss of `ints[kind][i]`)."""
        cache = self.ints[kind][i]
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        a = cache[v] = self._attr(self.layouts[kind][1][i], v)
        return a

    def value(self, kind: int, i: int, v: AttrValue) -> bytes:
        t = type(v)
        if t is int:
            return self.ints[kind][i].get(v) or self.int_attr(kind, i, v)  # type: ignore[arg-type]
        if t is float:
            return self.float_attr(kind, i, v)  # type: ignore[arg-type]
        key = (kind, i, t, v)
        a = self._others.get(key)
        if a is None:
            if len(self._others) >= _CACHE_MAX:
                self._others.clear()
            a = self._others[key] = self._attr(self.layouts[kind][1][i], v)
        return a

    def span(self, s: Span) -> bytes:
        trace_id, span_id, parent, name, kind, start, end, fixed, varying, event, error = s
        head = self.heads[kind].get((name, fixed)) or self.head(kind, (name, fixed), name, fixed)
        value = self.value
        return self.assemble(trace_id, span_id, parent, head, start, end,
                             [value(kind, i, v) for i, v in enumerate(varying) if v is not None], event, error)

    def encode(self, spans: list[Span]) -> bytes:
        span = self.span
        return self.wrap([span(s) for s in spans])


class ProtobufEncoder(_Encoder):
    """ExportTraceServiceRequest as protobuf bytes: `span` encodes one span (its
    ScopeSpans.spans field), `wrap` puts a batch of them in one request."""

    content_type = "application/x-protobuf"

    def __init__(self, resource: dict[str, AttrValue], scope: tuple[str, str], layouts: dict[int, Layout]):
        super().__init__(layouts)
        self._resource = _field(1, b"".join(_pb_attr(k, v, 1) for k, v in resource.items()))  # Resource.attributes
        self._scope = _field(1, _field(1, scope[0].encode()) + _field(2, scope[1].encode()))  # ScopeSpans.scope

    def _attr(self, key: str, value: AttrValue) -> bytes:
        return _pb_attr(key, value)

    def _float_head(self, key: str) -> bytes:
        return _pb_attr(key, 0.0)[:-8]  # all but the double's 8 bytes

    def _head(self, kind: int, name: str, fixed: tuple[AttrValue | None, ...]) -> bytes:
        # Span.name = 5, Span.kind = 6, Span.attributes = 9
        return _field(5, name.encode()) + b"\x30" + _varint(kind) + b"".join(
            _pb_attr(key, v) for key, v in zip(self.layouts[kind][0], fixed) if v is not None)

    def float_attr(self, kind: int, i: int, v: float) -> bytes:
        return self.float_heads[kind][i] + _pack_double(v)

    def assemble(self, trace_id: int, span_id: int, parent: int, head: bytes, start: int, end: int,
                 attrs: list[bytes], event: int | None, error: bool) -> bytes:
        parts = [_ids_parent(0x0A10, trace_id >> 64, trace_id & _LOW64, 0x1208, span_id, 0x2208, parent) if parent
                 else _ids(0x0A10, trace_id >> 64, trace_id & _LOW64, 0x1208, span_id),
                 head, _times(0x39, start, 0x41, end), *attrs]
        if event is not None:
            parts.append(_FIRST_TOKEN_EVENT % _pack_fixed64(event))
        if error:
            parts.append(_ERROR)
        body = b"".join(parts)
        n = len(body)
        return (_SPAN_HEAD[n] if n < 2048 else b"\x12" + _varint(n)) + body  # ScopeSpans.spans = 2

    def wrap(self, spans: list[bytes]) -> bytes:
        """The request for a batch of encoded spans, in one join."""
        size = sum(map(len, spans))
        scope_spans = len(self._scope) + size  # ResourceSpans.scope_spans = 2
        resource_spans = len(self._resource) + 1 + len(_varint(scope_spans)) + scope_spans
        # ExportTraceServiceRequest.resource_spans = 1
        return b"".join((b"\x0a", _varint(resource_spans), self._resource, b"\x12", _varint(scope_spans),
                         self._scope, *spans))


def _pb_attr(key: str, value: AttrValue, tag: int = 9) -> bytes:
    kv = _field(1, key.encode()) + _field(2, _any_value(value))  # KeyValue{key = 1, value = 2}
    return _field(tag, kv)


_json = _json_encode = msgspec.json.encode


def _json_value(v: AttrValue) -> bytes:
    if isinstance(v, str):
        return b'{"stringValue":%s}' % _json(v)
    if isinstance(v, tuple):
        return b'{"arrayValue":{"values":[%s]}}' % b",".join(_json_value(x) for x in v)
    if isinstance(v, bool):
        return b'{"boolValue":true}' if v else b'{"boolValue":false}'
    if isinstance(v, int):
        return b'{"intValue":"%d"}' % v
    return b'{"doubleValue":%s}' % _json(v)  # msgspec writes a non-finite float as null


def _json_attr(key: str, v: AttrValue) -> bytes:
    return b'{"key":%s,"value":%s}' % (_json(key), _json_value(v))


class JsonEncoder(_Encoder):
    """ExportTraceServiceRequest as OTLP/JSON, written as bytes (strings escaped by msgspec):
    `span` encodes one span, `wrap` puts a batch of them in one request. A head is a pair:
    the name and kind, and the fixed attributes (joined with the varying ones)."""

    content_type = "application/json"

    def __init__(self, resource: dict[str, AttrValue], scope: tuple[str, str], layouts: dict[int, Layout]):
        super().__init__(layouts)
        self._head_bytes = (b'{"resourceSpans":[{"resource":{"attributes":[%s]},"scopeSpans":[{"scope":'
                            b'{"name":%s,"version":%s},"spans":[' % (
                                b",".join(_json_attr(k, v) for k, v in resource.items()),
                                _json(scope[0]), _json(scope[1])))

    def _attr(self, key: str, value: AttrValue) -> bytes:
        return _json_attr(key, value)

    def _float_head(self, key: str) -> bytes:
        return b'{"key":%s,"value":{"doubleValue":' % _json(key)

    def _head(self, kind: int, name: str, fixed: tuple[AttrValue | None, ...]) -> tuple[bytes, bytes]:
        return (b'"name":%s,"kind":%d' % (_json(name), kind),
                b",".join(_json_attr(key, v) for key, v in zip(self.layouts[kind][0], fixed) if v is not None))

    def float_attr(self, kind: int, i: int, v: float) -> bytes:
        return b"%s%s}}" % (self.float_heads[kind][i], _json(v))  # msgspec writes a non-finite float as null

    def assemble(self, trace_id: int, span_id: int, parent: int, head: tuple[bytes, bytes], start: int, end: int,
                 attrs: list[bytes], event: int | None, error: bool) -> bytes:
        name_kind, fixed = head
        return (b'{"traceId":"%032x","spanId":"%016x","parentSpanId":"%s",%s,'
                b'"startTimeUnixNano":"%d","endTimeUnixNano":"%d","attributes":[%s]%s%s}' % (
                    trace_id, span_id, b"%016x" % parent if parent else b"", name_kind, start, end,
                    b",".join((fixed, *attrs) if fixed else attrs),
                    b"" if event is None else b',"events":[{"timeUnixNano":"%d","name":"%s"}]' % (
                        event, FIRST_TOKEN.encode()),
                    b',"status":{"code":2}' if error else b""))

    def wrap(self, spans: list[bytes]) -> bytes:
        """The request for a batch of encoded spans, in one join (a body is ~0.5 MB: joining the
        spans and then the request around them copied it twice). `spans` is the caller's own."""
        if not spans:
            return self._head_bytes + b"]}]}]}"
        spans[0] = self._head_bytes + spans[0]
        spans[-1] += b"]}]}]}"
        return b",".join(spans)


Encoder = ProtobufEncoder | JsonEncoder
