"""What a span holds, from the items the request path queues (tracing.py): `span_of` (the
reference: names, wall-clock times, attribute values, in the kinds' LAYOUTS) and `encode_items`,
the export thread's fast path, which encodes the items straight from the values they reference
without building the generic `Span` tuple first.

Why: the export thread runs on the gateway's own core, so its work counts per request as much
as the request path's. Going through `span_of` + `Encoder.span` costs per span a tuple of eleven
values and two of attribute values, a name string, and a loop over the attribute values testing
each one's type. Here each kind is written out once: the span's head (name, kind and fixed
attributes) is looked up by the raw values it is made of — a tuple of references, no strings
made — and each varying value (typed by the LedgerRecord / Exchange it comes from: ints and one
float) is one cache lookup or one pack. The bytes are the same as the generic path's for the
same span (tests/observability/test_tracing.py checks both formats); a head not seen yet is
made from `span_of`'s values.
"""
from __future__ import annotations

from typing import Any

from gatehouse.observability.otlp_encode import (
    _ERROR,
    _FIRST_TOKEN_EVENT,
    _LOW64,
    _SPAN_HEAD,
    Encoder,
    JsonEncoder,
    Layout,
    ProtobufEncoder,
    Span,
    _ids,
    _ids_parent,
    _json_encode,
    _pack_double,
    _pack_fixed64,
    _times,
    _varint,
)

OPERATIONS = {"embeddings": "embeddings", "completions": "text_completion", "embed": "embeddings"}
PROVIDER_NAMES = {"bedrock": "aws.bedrock", "gemini": "gcp.gemini"}
INTERNAL, SERVER, CLIENT = 1, 2, 3  # OTLP SpanKind
# Each kind's attribute keys, in the order `span_of` fills the span's value tuples.
LAYOUTS: dict[int, Layout] = {
    SERVER: (("http.request.method", "url.path", "gatehouse.surface", "gen_ai.request.model", "gatehouse.consumer",
              "gatehouse.group", "gatehouse.deployment", "gatehouse.cache_hit", "error.type",
              "gatehouse.guardrail.action", "gatehouse.guardrail.matches"),
             ("http.response.status_code", "gatehouse.attempts", "gatehouse.cost_usd",
              "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")),
    CLIENT: (("gen_ai.operation.name", "gen_ai.request.model", "gen_ai.provider.name", "gatehouse.provider",
              "gatehouse.deployment", "gatehouse.streamed", "gen_ai.response.model", "gatehouse.usage_estimated",
              "error.type", "gatehouse.route", "gen_ai.response.finish_reasons"),
             ("gatehouse.attempt", "http.response.status_code", "gen_ai.usage.input_tokens",
              "gen_ai.usage.output_tokens", "gatehouse.cost_usd")),
    # a policy step's I/O: a limits call to Redis, a guard model's verdict (Tracing.policy_span)
    INTERNAL: (("gatehouse.policy.step", "db.system.name", "db.operation.name", "gen_ai.operation.name",
                "gen_ai.request.model", "gatehouse.guardrail.check", "gatehouse.guardrail.stage",
                "gatehouse.guardrail.verdict", "gatehouse.outcome", "error.type"), ()),
}


def encode_items(enc: Encoder, items: list[tuple[Any, ...]]) -> bytes:
    """One export request for a batch of queued items."""
    if isinstance(enc, ProtobufEncoder):
        return _protobuf(enc, items)
    return _json(enc, items)


def _protobuf(enc: ProtobufEncoder, items: list[tuple[Any, ...]]) -> bytes:
    """encode_items for protobuf (OTLP/HTTP and gRPC), with `ProtobufEncoder.assemble` written in:
    the same bytes, a call and a list less per span (tests/observability/test_tracing.py)."""
    heads_c, heads_s = enc.heads[CLIENT], enc.heads[SERVER]
    attempt_c, status_c, input_c, output_c, _ = enc.ints[CLIENT]
    status_s, attempts_s, _, input_s, output_s = enc.ints[SERVER]
    cost_c, cost_s = enc.float_heads[CLIENT][4], enc.float_heads[SERVER][2]
    int_attr = enc.int_attr
    out: list[bytes] = []
    for item in items:
        kind = item[0]
        if kind == CLIENT:
            _, ((trace, parent, _, _, wall, t0), span_id, dep), rec, started, finished = item
            key: tuple[Any, ...] = (rec.surface, rec.model, dep.provider.type_name, dep.provider_name,
                                    dep.upstream_model, rec.streamed, rec.deployment, rec.estimated, rec.error_type,
                                    rec.route, finished)
            head = heads_c.get(key)
            if head is None:
                s = span_of(item)
                head = enc.head(CLIENT, key, s[3], s[7])
            begin = wall + int((started - t0) * 1e9)
            a, status, i, o, ttft = rec.attempt, rec.status, rec.input_tokens, rec.output_tokens, rec.ttft_ms
            parts = [_ids_parent(0x0A10, trace >> 64, trace & _LOW64, 0x1208, span_id, 0x2208, parent), head,
                     _times(0x39, begin, 0x41, begin + int(rec.latency_ms * 1e6)),
                     attempt_c.get(a) or int_attr(CLIENT, 0, a), status_c.get(status) or int_attr(CLIENT, 1, status),
                     input_c.get(i) or int_attr(CLIENT, 2, i), output_c.get(o) or int_attr(CLIENT, 3, o),
                     cost_c + _pack_double(rec.cost_usd)]
            if ttft is not None:
                parts.append(_FIRST_TOKEN_EVENT % _pack_fixed64(begin + int(ttft * 1e6)))
            if status >= 500 or status == 429:
                parts.append(_ERROR)
        elif kind == SERVER:
            (_, (trace, span_id, parent, _, wall, t0), method, path, surface, model, p, deployment, cache_hit,
             error, status, attempts, cost, u, finished, first, guarded) = item
            key = (method, path, surface, model, None if p is None else p.consumer, None if p is None else p.group,
                   deployment, cache_hit, error, guarded)
            head = heads_s.get(key)
            if head is None:
                s = span_of(item)
                head = enc.head(SERVER, key, s[3], s[7])
            parts = [_ids_parent(0x0A10, trace >> 64, trace & _LOW64, 0x1208, span_id, 0x2208, parent) if parent
                     else _ids(0x0A10, trace >> 64, trace & _LOW64, 0x1208, span_id), head,
                     _times(0x39, wall, 0x41, wall + int((finished - t0) * 1e9)),
                     status_s.get(status) or int_attr(SERVER, 0, status),
                     attempts_s.get(attempts) or int_attr(SERVER, 1, attempts), cost_s + _pack_double(cost)]
            if u is not None:
                i, o = u.input_tokens, u.output_tokens
                parts += (input_s.get(i) or int_attr(SERVER, 3, i), output_s.get(o) or int_attr(SERVER, 4, o))
            if first is not None:
                parts.append(_FIRST_TOKEN_EVENT % _pack_fixed64(wall + int((first - t0) * 1e9)))
            if status >= 500:
                parts.append(_ERROR)
        else:  # INTERNAL: a policy step's I/O, only where one is configured (the generic path)
            out.append(enc.span(span_of(item)))
            continue
        body = b"".join(parts)
        n = len(body)
        out += (_SPAN_HEAD[n] if n < 2048 else b"\x12" + _varint(n), body)  # ScopeSpans.spans = 2; wrap joins
    return enc.wrap(out)


def span_of(item: tuple[Any, ...]) -> Span:
    """A queued item as the span the encoders take (on the export thread): its name, wall-clock
    times (the request's wall clock plus monotonic offsets) and attribute values."""
    kind = item[0]
    if kind == CLIENT:
        _, ((trace, parent, _, _, wall, t0), span_id, dep), rec, started, finished = item
        op = OPERATIONS.get(rec.surface, "chat")
        provider = dep.provider.type_name
        begin = wall + int((started - t0) * 1e9)
        ttft = rec.ttft_ms
        status = rec.status
        return (trace, span_id, parent, f"{op} {rec.model}", CLIENT, begin, begin + int(rec.latency_ms * 1e6),
                (op, rec.model, PROVIDER_NAMES.get(provider, provider), dep.provider_name, dep.upstream_model,
                 rec.streamed, rec.deployment or "", rec.estimated, rec.error_type or None, rec.route or None,
                 finished),
                (rec.attempt, status, rec.input_tokens, rec.output_tokens, rec.cost_usd),
                None if ttft is None else begin + int(ttft * 1e6), status >= 500 or status == 429)
    if kind == INTERNAL:
        _, (trace, parent, _, _, wall, t0), span_id, name, started, ended, fixed, error = item
        return (trace, span_id, parent, name, INTERNAL, wall + int((started - t0) * 1e9),
                wall + int((ended - t0) * 1e9), fixed, (), None, error)
    (_, (trace, span_id, parent, _, wall, t0), method, path, surface, model, p, deployment, cache_hit, error,
     status, attempts, cost, u, finished, first, guarded) = item
    return (
        # the route's surface: bounded, unlike paths with names in them
        trace, span_id, parent, method if surface == "unknown" else f"{method} {surface}", SERVER,
        wall, wall + int((finished - t0) * 1e9),
        (method, path, surface, model or None, None if p is None else p.consumer,
         None if p is None else p.group or None, deployment or None, True if cache_hit else None, error or None,
         None if guarded is None else guarded.span_action, None if guarded is None else guarded.span_matches),
        (status, attempts, cost, None if u is None else u.input_tokens, None if u is None else u.output_tokens),
        None if first is None else wall + int((first - t0) * 1e9), status >= 500)


_SPAN_JSON = (b'{"traceId":"%032x","spanId":"%016x","parentSpanId":"%s",%s,'
              b'"startTimeUnixNano":"%d","endTimeUnixNano":"%d","attributes":[%s]%s%s}')
_EVENT_JSON = b',"events":[{"timeUnixNano":"%d","name":"gen_ai.first_token"}]'
_ERROR_JSON = b',"status":{"code":2}'


def _json(enc: JsonEncoder, items: list[tuple[Any, ...]]) -> bytes:
    """encode_items for OTLP/JSON, with `JsonEncoder.assemble` written in (the same bytes)."""
    heads_c, heads_s = enc.heads[CLIENT], enc.heads[SERVER]
    attempt_c, status_c, input_c, output_c, _ = enc.ints[CLIENT]
    status_s, attempts_s, _, input_s, output_s = enc.ints[SERVER]
    cost_c, cost_s = enc.float_heads[CLIENT][4], enc.float_heads[SERVER][2]
    int_attr = enc.int_attr
    out: list[bytes] = []
    for item in items:
        kind = item[0]
        if kind == CLIENT:
            _, ((trace, parent, _, _, wall, t0), span_id, dep), rec, started, finished = item
            key: tuple[Any, ...] = (rec.surface, rec.model, dep.provider.type_name, dep.provider_name,
                                    dep.upstream_model, rec.streamed, rec.deployment, rec.estimated, rec.error_type,
                                    rec.route, finished)
            head = heads_c.get(key)
            if head is None:
                s = span_of(item)
                head = enc.head(CLIENT, key, s[3], s[7])
            name_kind, fixed = head
            begin = wall + int((started - t0) * 1e9)
            a, status, i, o, ttft = rec.attempt, rec.status, rec.input_tokens, rec.output_tokens, rec.ttft_ms
            attrs = [attempt_c.get(a) or int_attr(CLIENT, 0, a), status_c.get(status) or int_attr(CLIENT, 1, status),
                     input_c.get(i) or int_attr(CLIENT, 2, i), output_c.get(o) or int_attr(CLIENT, 3, o),
                     b"%s%s}}" % (cost_c, _json_encode(rec.cost_usd))]
            out.append(_SPAN_JSON % (
                trace, span_id, b"%016x" % parent, name_kind, begin, begin + int(rec.latency_ms * 1e6),
                b",".join((fixed, *attrs) if fixed else attrs),
                b"" if ttft is None else _EVENT_JSON % (begin + int(ttft * 1e6)),
                _ERROR_JSON if status >= 500 or status == 429 else b""))
            continue
        if kind == INTERNAL:  # a policy step's I/O, only where one is configured (the generic path)
            out.append(enc.span(span_of(item)))
            continue
        (_, (trace, span_id, parent, _, wall, t0), method, path, surface, model, p, deployment, cache_hit, error,
         status, attempts, cost, u, finished, first, guarded) = item
        key = (method, path, surface, model, None if p is None else p.consumer, None if p is None else p.group,
               deployment, cache_hit, error, guarded)
        head = heads_s.get(key)
        if head is None:
            s = span_of(item)
            head = enc.head(SERVER, key, s[3], s[7])
        name_kind, fixed = head
        attrs = [status_s.get(status) or int_attr(SERVER, 0, status),
                 attempts_s.get(attempts) or int_attr(SERVER, 1, attempts), b"%s%s}}" % (cost_s, _json_encode(cost))]
        if u is not None:
            i, o = u.input_tokens, u.output_tokens
            attrs += (input_s.get(i) or int_attr(SERVER, 3, i), output_s.get(o) or int_attr(SERVER, 4, o))
        out.append(_SPAN_JSON % (
            trace, span_id, b"%016x" % parent if parent else b"", name_kind, wall, wall + int((finished - t0) * 1e9),
            b",".join((fixed, *attrs) if fixed else attrs),
            b"" if first is None else _EVENT_JSON % (wall + int((first - t0) * 1e9)),
            _ERROR_JSON if status >= 500 else b""))
    return enc.wrap(out)
