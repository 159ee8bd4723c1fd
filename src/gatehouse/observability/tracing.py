"""Traces (`tracing.enabled: true`): OTLP over HTTP (protobuf or JSON) or gRPC.

One span per request (SERVER) and one per upstream attempt (CLIENT, a child: retries and
failovers show as siblings), with GenAI semantic-convention attributes (gen_ai.operation.name,
gen_ai.request.model, gen_ai.response.model, gen_ai.provider.name, gen_ai.usage.*_tokens) and the
gateway's own (consumer, group, deployment, attempt, cost, route reason, guardrail action and
matches); the first token is an event. A policy step that does I/O (limits in Redis, each guard
model) adds an INTERNAL child span (`policy_span`). A
client's W3C `traceparent` becomes the parent, and each attempt's context goes upstream in a
`traceparent` header. Prompts and completions never go into spans.

Why not the OpenTelemetry SDK: its span objects, attribute maps, contexts and exporter cost ~100 µs
of one core per traced request (measured: −50% throughput with every request sampled). Here the
request path does as little as it can: ids are integers from `random.getrandbits` (one draw for
the trace and the request's span, one per attempt; reseeded after fork), the request's context is
one tuple on the Exchange, the only string made is the attempt's `traceparent` (it goes upstream),
and a finished span is queued as one tuple of references to what the request already holds (the
attempt's LedgerRecord, the Deployment, the Principal, the Usage) — no attribute is copied, no
timestamp converted. The export thread (otlp_export.py) makes the spans of the queued items
(otlp_items.py: names, wall-clock times, attribute values) and encodes them (otlp_encode.py);
docs/observability.md#tracing has the measured cost.

The metering hooks call in (metering/meter.py); with tracing off `Meter.tracing` is None and
the request path pays one attribute test per hook.
"""
from __future__ import annotations

import re
import time
from random import getrandbits
from typing import TYPE_CHECKING, Any

from gatehouse.observability.otlp_export import Exporter, settings
from gatehouse.observability.otlp_items import CLIENT, INTERNAL, LAYOUTS, SERVER, encode_items

if TYPE_CHECKING:
    from gatehouse.config import TracingConfig
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.metering.record import LedgerRecord
    from gatehouse.routing.table import Deployment

# The per-request state lives on the Exchange: `ex.span` (the request's Context, None when the
# request is not traced), `ex.attempt_span` (the sampled attempt in flight: (Context, span id,
# Deployment)) and `ex.traceparent` (gateway/attempts.py puts it in the attempt's CallContext).

_LOW64 = (1 << 64) - 1
# W3C trace context: version-traceid-parentid-flags (a later version may append fields).
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?")
# The attempt's context sent upstream (%-formatting: an f-string's {:032x} parses its format spec
# on every call, ~1/4 of the traceparent's cost)
_SAMPLED, _NOT_SAMPLED = "00-%032x-%016x-01", "00-%032x-%016x-00"
# A request's context: (trace id, its span id, the client's parent span id or 0, sampled,
# wall-clock ns at its start, its monotonic start); ids are integers, hex only on the wire.
Context = tuple[int, int, int, bool, int, float]


class Tracing:
    def __init__(self, cfg: TracingConfig, env: dict[str, str] | None = None):
        s = settings(cfg, env)
        self.settings = s
        self.exporter = Exporter(s, LAYOUTS, encode_items)
        self._queue, self._wake = self.exporter.queue, self.exporter.wake
        self._max_queue, self._max_batch = s.max_queue, s.max_batch
        # TraceIdRatioBased: kept when the trace id's low 64 bits fall under ratio × 2^64
        self._bound = round(s.sampler.ratio * (1 << 64))
        self._parent_based = s.sampler.parent_based

    def _push(self, item: tuple[Any, ...]) -> None:
        """Queue a finished span (the hooks below do the same inline: one call less each)."""
        q = self._queue
        if len(q) < self._max_queue:
            q.append(item)
            if len(q) == self._max_batch:
                self._wake.set()
        else:
            self.exporter.dropped += 1

    # ---- hooks ----------------------------------------------------------------------------

    def start(self, ex: Exchange, traceparent: str | None) -> None:
        """The request arrived (app.py): its context, under the client's trace when it sent one."""
        if traceparent:
            m = _TRACEPARENT.fullmatch(traceparent.strip())
            if m is not None and m.group(2) != "0" * 32 and m.group(3) != "0" * 16 and m.group(1) != "ff":
                trace = int(m.group(2), 16)
                sampled = (int(m.group(4), 16) & 1 == 1 if self._parent_based
                           else trace & _LOW64 < self._bound)
                ex.span = (trace, getrandbits(64) or 1, int(m.group(3), 16), sampled, time.time_ns(), ex.started)
                return
        r = getrandbits(192)  # the trace id (128 bits) and the request's span id (64), in one draw
        trace = r >> 64 or 1
        ex.span = (trace, r & _LOW64 or 1, 0, trace & _LOW64 < self._bound, time.time_ns(), ex.started)

    def begin_attempt(self, ex: Exchange, dep: Deployment) -> None:
        r: Context | None = ex.span
        if r is None:
            return
        span_id = getrandbits(64) or 1
        if r[3]:
            ex.traceparent = _SAMPLED % (r[0], span_id)  # sent upstream
            ex.attempt_span = (r, span_id, dep)
        else:
            ex.traceparent = _NOT_SAMPLED % (r[0], span_id)

    def end_attempt(self, ex: Exchange, rec: LedgerRecord, started: float) -> None:
        a = ex.attempt_span
        if a is None:
            return
        ex.attempt_span = None
        q = self._queue
        if len(q) < self._max_queue:
            q.append((CLIENT, a, rec, started, ex.finish_reasons))
            if len(q) == self._max_batch:
                self._wake.set()
        else:
            self.exporter.dropped += 1

    def end_request(self, ex: Exchange, method: str, path: str, finished: float) -> None:
        r: Context | None = ex.span
        if r is None:
            return
        ex.span = None
        if not r[3]:
            return
        q = self._queue
        if len(q) < self._max_queue:
            q.append((SERVER, r, method, path, ex.surface, ex.model, ex.principal, ex.deployment, ex.cache_hit,
                      ex.error_type, ex.status, ex.attempts, ex.cost_usd, ex.usage, finished, ex.first_token_at,
                      ex.guard_outcome))
            if len(q) == self._max_batch:
                self._wake.set()
        else:
            self.exporter.dropped += 1

    def policy_context(self, ex: Exchange) -> tuple[int, str] | None:
        """A policy step's span id and its `traceparent`, made before its call so that the call
        carries it (a guard model's upstream joins the trace); None: the request is not sampled."""
        r: Context | None = ex.span
        if r is None or not r[3]:
            return None
        span_id = getrandbits(64) or 1
        return span_id, _SAMPLED % (r[0], span_id)

    def policy_span(self, ex: Exchange, name: str, started: float, fixed: tuple[str | None, ...],
                    error: bool = False, span_id: int | None = None) -> None:
        """A policy step's I/O, a child of the request's span from `started` (monotonic) to now: a
        limits call to Redis, a guard model's verdict. `fixed`: the values of LAYOUTS[INTERNAL]'s
        keys (None: left out); `span_id`: policy_context's, when the call carried it. Only steps
        that do I/O call this, and only when tracing is on."""
        r: Context | None = ex.span
        if r is None or not r[3]:
            return
        self._push((INTERNAL, r, span_id or getrandbits(64) or 1, name, started, time.monotonic(), fixed, error))

    def close(self) -> None:
        self.exporter.close()  # sends what is queued (blocking: call it off the loop)
