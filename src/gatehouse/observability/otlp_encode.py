"""OTLP trace export bodies, encoded by hand from the gateway's own span tuples.

Why by hand: the OpenTelemetry SDK builds a Python object per span, attribute and event, then
its exporter builds protobuf messages from them — ~100 µs of one core per traced request, half
the gateway's budget. Here a span is one tuple (`Span`) and a batch of them becomes an
ExportTraceServiceRequest in one pass: protobuf (OTLP/HTTP `application/x-protobuf` and the
gRPC TraceService/Export body, which are the same bytes) or OTLP/JSON (`application/json`,
ids as hex, 64-bit integers as decimal strings, as the OTLP spec's JSON mapping says). Attribute
values repeat (models, consumers, deployments, statuses), so each encoded (key, value) pair is
kept in a bounded cache. The tests parse both with the generated opentelemetry-proto classes
(tests/observability/).

Field numbers: opentelemetry/proto/{collector/trace/v1/trace_service,trace/v1/trace,
common/v1/common,resource/v1/resource}.proto.
"""
from __future__ import annotations

import struct

import msgspec

AttrValue = str | bool | int | float
# (trace_id hex, span_id hex, parent span_id hex or "", name, kind (2 SERVER, 3 CLIENT),
#  start ns, end ns, fixed values, varying values, first-token event ns or None, status ERROR).
# The attribute keys are the kind's Layout; a None value is left out. "Fixed" values repeat
# from request to request (model, consumer, deployment...): all of them are encoded once per
# distinct combination. "Varying" ones (tokens, cost, status) are encoded one by one.
Span = tuple[str, str, str, str, int, int, int, tuple[AttrValue | None, ...], tuple[AttrValue | None, ...],
             int | None, bool]
Layout = tuple[tuple[str, ...], tuple[str, ...]]  # (fixed keys, varying keys)
FIRST_TOKEN = "gen_ai.first_token"

_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack


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
    if isinstance(v, bool):
        return b"\x10\x01" if v else b"\x10\x00"  # bool_value = 2
    if isinstance(v, int):
        return b"\x18" + _varint(v)  # int_value = 3
    return b"\x21" + _pack_double(v)  # double_value = 4


_CACHE_MAX = 8192  # encoded (key, value) pairs kept; models, consumers and statuses repeat


class ProtobufEncoder:
    """ExportTraceServiceRequest as protobuf bytes."""

    content_type = "application/x-protobuf"

    def __init__(self, resource: dict[str, AttrValue], scope: tuple[str, str], layouts: dict[int, Layout]):
        self._layouts = layouts
        self._attrs: dict[tuple[str, AttrValue, type], bytes] = {}  # (key, value, type) -> Span.attributes field
        self._fixed: dict[tuple[int, tuple[AttrValue | None, ...]], bytes] = {}  # (kind, fixed values) -> fields
        self._names: dict[str, bytes] = {}
        self._resource = _field(1, b"".join(self._attr(k, v, 1) for k, v in resource.items()))  # Resource.attributes
        self._scope = _field(1, _field(1, scope[0].encode()) + _field(2, scope[1].encode()))  # ScopeSpans.scope

    @staticmethod
    def _attr(key: str, value: AttrValue, tag: int = 9) -> bytes:
        kv = _field(1, key.encode()) + _field(2, _any_value(value))  # KeyValue{key = 1, value = 2}
        return _field(tag, kv)

    def encode(self, spans: list[Span]) -> bytes:
        cache, fixed_cache, names, attr, fromhex = self._attrs, self._fixed, self._names, self._attr, bytes.fromhex
        for c in (cache, fixed_cache, names):
            if len(c) > _CACHE_MAX:
                c.clear()
        layouts = self._layouts
        out = []
        for trace_id, span_id, parent, name, kind, start, end, fixed, varying, event, error in spans:
            parts = [b"\x0a\x10", fromhex(trace_id), b"\x12\x08", fromhex(span_id)]
            if parent:
                parts += (b"\x22\x08", fromhex(parent))
            n = names.get(name)
            if n is None:
                n = names[name] = _field(5, name.encode())
            fixed_keys, varying_keys = layouts[kind]
            f = fixed_cache.get((kind, fixed))
            if f is None:
                f = fixed_cache[(kind, fixed)] = b"".join(
                    attr(k, v) for k, v in zip(fixed_keys, fixed) if v is not None)
            parts += (n, b"\x30", _varint(kind), b"\x39", _pack_fixed64(start), b"\x41", _pack_fixed64(end), f)
            for k, v in zip(varying_keys, varying):
                if v is not None:
                    key = (k, v, type(v))
                    a = cache.get(key)
                    if a is None:
                        a = cache[key] = attr(k, v)
                    parts.append(a)
            if event is not None:  # Span.events = 11: Event{time_unix_nano = 1, name = 2}
                parts += (b"\x5a\x1d\x09", _pack_fixed64(event), b"\x12\x12", FIRST_TOKEN.encode())
            if error:
                parts.append(b"\x7a\x02\x18\x02")  # Span.status = 15: Status{code = 3: ERROR}
            out.append(_field(2, b"".join(parts)))  # ScopeSpans.spans = 2
        scope_spans = _field(2, self._scope + b"".join(out))  # ResourceSpans.scope_spans = 2
        return _field(1, self._resource + scope_spans)  # ExportTraceServiceRequest.resource_spans = 1


_json = msgspec.json.encode


def _json_attr(key: str, v: AttrValue) -> bytes:
    if isinstance(v, str):
        value = b'{"stringValue":%s}' % _json(v)
    elif isinstance(v, bool):
        value = b'{"boolValue":true}' if v else b'{"boolValue":false}'
    elif isinstance(v, int):
        value = b'{"intValue":"%d"}' % v
    else:  # msgspec writes a non-finite float as null
        value = b'{"doubleValue":%s}' % _json(v)
    return b'{"key":%s,"value":%s}' % (_json(key), value)


class JsonEncoder:
    """ExportTraceServiceRequest as OTLP/JSON, written as bytes (strings escaped by msgspec)."""

    content_type = "application/json"

    def __init__(self, resource: dict[str, AttrValue], scope: tuple[str, str], layouts: dict[int, Layout]):
        self._layouts = layouts
        self._attrs: dict[tuple[str, AttrValue, type], bytes] = {}
        self._fixed: dict[tuple[int, tuple[AttrValue | None, ...]], bytes] = {}
        self._names: dict[str, bytes] = {}
        self._head = (b'{"resourceSpans":[{"resource":{"attributes":[%s]},"scopeSpans":[{"scope":'
                      b'{"name":%s,"version":%s},"spans":[' % (
                          b",".join(_json_attr(k, v) for k, v in resource.items()),
                          _json(scope[0]), _json(scope[1])))

    def encode(self, spans: list[Span]) -> bytes:
        cache, fixed_cache, names, layouts = self._attrs, self._fixed, self._names, self._layouts
        for c in (cache, fixed_cache, names):
            if len(c) > _CACHE_MAX:
                c.clear()
        out = []
        for trace_id, span_id, parent, name, kind, start, end, fixed, varying, event, error in spans:
            n = names.get(name)
            if n is None:
                n = names[name] = _json(name)
            fixed_keys, varying_keys = layouts[kind]
            f = fixed_cache.get((kind, fixed))
            if f is None:
                f = fixed_cache[(kind, fixed)] = b",".join(
                    _json_attr(k, v) for k, v in zip(fixed_keys, fixed) if v is not None)
            parts = [f] if f else []
            for k, v in zip(varying_keys, varying):
                if v is not None:
                    key = (k, v, type(v))
                    a = cache.get(key)
                    if a is None:
                        a = cache[key] = _json_attr(k, v)
                    parts.append(a)
            out.append(b'{"traceId":"%s","spanId":"%s","parentSpanId":"%s","name":%s,"kind":%d,'
                       b'"startTimeUnixNano":"%d","endTimeUnixNano":"%d","attributes":[%s]%s%s}' % (
                           trace_id.encode(), span_id.encode(), parent.encode(), n, kind, start, end,
                           b",".join(parts),
                           b"" if event is None else b',"events":[{"timeUnixNano":"%d","name":"%s"}]' % (
                               event, FIRST_TOKEN.encode()),
                           b',"status":{"code":2}' if error else b""))
        return self._head + b",".join(out) + b"]}]}]}"
