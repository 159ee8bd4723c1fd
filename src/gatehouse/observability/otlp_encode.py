"""OTLP trace export bodies, encoded by hand from the gateway's own span tuples.

Why by hand: the OpenTelemetry SDK builds a Python object per span, attribute and event, then
its exporter builds protobuf messages from them — ~100 µs of one core per traced request, half
the gateway's budget. Here a span is one tuple (`Span`) and a batch of them becomes an
ExportTraceServiceRequest in one pass: protobuf (OTLP/HTTP `application/x-protobuf` and the
gRPC TraceService/Export body, which are the same bytes) or OTLP/JSON (`application/json`,
ids as hex, 64-bit integers as decimal strings, as the OTLP spec's JSON mapping says). The
tests parse both with the generated opentelemetry-proto classes (tests/observability/).

Field numbers: opentelemetry/proto/{collector/trace/v1/trace_service,trace/v1/trace,
common/v1/common,resource/v1/resource}.proto.
"""
from __future__ import annotations

import struct
from typing import Any, Callable

import msgspec

AttrValue = str | bool | int | float
# (trace_id hex, span_id hex, parent span_id hex or "", name, kind (2 SERVER, 3 CLIENT),
#  start ns, end ns, attributes, first-token event ns or None, status ERROR)
Span = tuple[str, str, str, str, int, int, int, dict[str, AttrValue], int | None, bool]
FIRST_TOKEN = "gen_ai.first_token"

_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack


def _varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return bytes((n,))
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


class ProtobufEncoder:
    """ExportTraceServiceRequest as protobuf bytes."""

    content_type = "application/x-protobuf"

    def __init__(self, resource: dict[str, AttrValue], scope: tuple[str, str]):
        self._keys: dict[str, bytes] = {}  # attribute key -> its encoded KeyValue.key field
        self._resource = _field(1, b"".join(self._attr(k, v, 1) for k, v in resource.items()))  # Resource.attributes
        self._scope = _field(1, _field(1, scope[0].encode()) + _field(2, scope[1].encode()))  # ScopeSpans.scope

    def _attr(self, key: str, value: AttrValue, tag: int) -> bytes:
        k = self._keys.get(key)
        if k is None:
            k = self._keys[key] = _field(1, key.encode())
        any_value = _any_value(value)
        kv = k + b"\x12" + _varint(len(any_value)) + any_value
        return _varint(tag << 3 | 2) + _varint(len(kv)) + kv

    def encode(self, spans: list[Span]) -> bytes:
        attr = self._attr
        out = []
        for trace_id, span_id, parent, name, kind, start, end, attrs, event, error in spans:
            n = name.encode()
            parts = [b"\x0a\x10", bytes.fromhex(trace_id), b"\x12\x08", bytes.fromhex(span_id)]
            if parent:
                parts += (b"\x22\x08", bytes.fromhex(parent))
            parts += (b"\x2a", _varint(len(n)), n, b"\x30", _varint(kind),
                      b"\x39", _pack_fixed64(start), b"\x41", _pack_fixed64(end))
            parts += [attr(k, v, 9) for k, v in attrs.items()]
            if event is not None:  # Span.events = 11: Event{time_unix_nano = 1, name = 2}
                parts += (b"\x5a\x1d\x09", _pack_fixed64(event), b"\x12\x12", FIRST_TOKEN.encode())
            if error:
                parts.append(b"\x7a\x02\x18\x02")  # Span.status = 15: Status{code = 3: ERROR}
            out.append(_field(2, b"".join(parts)))  # ScopeSpans.spans = 2
        scope_spans = _field(2, self._scope + b"".join(out))  # ResourceSpans.scope_spans = 2
        return _field(1, self._resource + scope_spans)  # ExportTraceServiceRequest.resource_spans = 1


def _json_value(v: AttrValue) -> dict[str, Any]:
    if isinstance(v, str):
        return {"stringValue": v}
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    return {"doubleValue": v}


class JsonEncoder:
    """ExportTraceServiceRequest as OTLP/JSON (msgspec encodes the built lists in C)."""

    content_type = "application/json"

    def __init__(self, resource: dict[str, AttrValue], scope: tuple[str, str]):
        self._resource = {"attributes": [{"key": k, "value": _json_value(v)} for k, v in resource.items()]}
        self._scope = {"name": scope[0], "version": scope[1]}
        self._encode: Callable[[Any], bytes] = msgspec.json.Encoder().encode

    def encode(self, spans: list[Span]) -> bytes:
        out = []
        for trace_id, span_id, parent, name, kind, start, end, attrs, event, error in spans:
            s: dict[str, Any] = {
                "traceId": trace_id, "spanId": span_id, "parentSpanId": parent, "name": name, "kind": kind,
                "startTimeUnixNano": str(start), "endTimeUnixNano": str(end),
                "attributes": [{"key": k, "value": _json_value(v)} for k, v in attrs.items()]}
            if event is not None:
                s["events"] = [{"timeUnixNano": str(event), "name": FIRST_TOKEN}]
            if error:
                s["status"] = {"code": 2}
            out.append(s)
        return self._encode({"resourceSpans": [
            {"resource": self._resource, "scopeSpans": [{"scope": self._scope, "spans": out}]}]})
