"""Traces (`tracing.enabled: true`): OTLP over HTTP (protobuf or JSON) or gRPC.

One span per request (SERVER) and one per upstream attempt (CLIENT, a child: retries and
failovers show as siblings), with GenAI semantic-convention attributes (gen_ai.operation.name,
gen_ai.request.model, gen_ai.response.model, gen_ai.provider.name, gen_ai.usage.*_tokens) and the
gateway's own (consumer, group, deployment, attempt, cost); the first token is an event. A
client's W3C `traceparent` becomes the parent, and each attempt's context goes upstream in a
`traceparent` header. Prompts and completions never go into spans.

Why not the OpenTelemetry SDK: its span objects, attribute maps, contexts and exporter cost ~100 µs
of one core per traced request (measured: −50% throughput with every request sampled). Here the
request path keeps one slots object per request, ids from `random.getrandbits` (reseeded after
fork), timestamps from the monotonic clocks the metering already reads (wall clock read once per
request), and hands each finished span to a bounded queue as one tuple; otlp_export.py encodes
and sends batches on its own thread (docs/observability.md#tracing has the measured cost).

The metering hooks call in (metering/meter.py); with tracing off `Meter.tracing` is None and
the request path pays one attribute test per hook.
"""
from __future__ import annotations

import re
import time
from random import getrandbits
from typing import TYPE_CHECKING

from gatehouse.observability.otlp_encode import Layout, Span
from gatehouse.observability.otlp_export import Exporter, settings

if TYPE_CHECKING:
    from gatehouse.config import TracingConfig
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.metering.record import LedgerRecord
    from gatehouse.routing.table import Deployment

# The per-request state lives on the Exchange: `ex.span` (this module's _Request, None when the
# request is not traced) and `ex.traceparent` (gateway/attempts.py puts it in the attempt's
# CallContext). The hooks read and write them directly: four hooks per request, each a call less.

OPERATIONS = {"embeddings": "embeddings", "completions": "text_completion", "embed": "embeddings"}
PROVIDER_NAMES = {"bedrock": "aws.bedrock", "gemini": "gcp.gemini"}
SERVER, CLIENT = 2, 3  # OTLP SpanKind
# Each kind's attribute keys, in the order the hooks below fill the span's value tuples.
LAYOUTS: dict[int, Layout] = {
    SERVER: (("http.request.method", "url.path", "gatehouse.surface", "gen_ai.request.model", "gatehouse.consumer",
              "gatehouse.group", "gatehouse.deployment", "gatehouse.cache_hit", "error.type"),
             ("http.response.status_code", "gatehouse.attempts", "gatehouse.cost_usd",
              "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")),
    CLIENT: (("gen_ai.operation.name", "gen_ai.request.model", "gen_ai.provider.name", "gatehouse.provider",
              "gatehouse.deployment", "gatehouse.streamed", "gen_ai.response.model", "gatehouse.usage_estimated",
              "error.type"),
             ("gatehouse.attempt", "http.response.status_code", "gen_ai.usage.input_tokens",
              "gen_ai.usage.output_tokens", "gatehouse.cost_usd")),
}
_LOW64 = (1 << 64) - 1
# W3C trace context: version-traceid-parentid-flags (a later version may append fields).
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?")


class _Request:
    """One request's trace context; `attempt` is the upstream attempt in flight."""

    __slots__ = ("trace_id", "span_id", "parent", "sampled", "wall", "started", "method", "path", "attempt")

    def __init__(self, trace_id: str, parent: str, sampled: bool, wall: int, started: float,
                 method: str, path: str):
        self.trace_id, self.parent, self.sampled = trace_id, parent, sampled
        self.span_id = f"{getrandbits(64) or 1:016x}"
        self.wall, self.started, self.method, self.path = wall, started, method, path
        self.attempt: tuple[str, str, str, str, str, str, int, bool] | None = None


class Tracing:
    def __init__(self, cfg: TracingConfig, env: dict[str, str] | None = None):
        s = settings(cfg, env)
        self.settings = s
        self.exporter = Exporter(s, LAYOUTS)
        self._queue, self._wake = self.exporter.queue, self.exporter.wake
        self._max_queue, self._max_batch = s.max_queue, s.max_batch
        # TraceIdRatioBased: kept when the trace id's low 64 bits fall under ratio × 2^64
        self._bound = round(s.sampler.ratio * (1 << 64))
        self._parent_based = s.sampler.parent_based

    def _push(self, span: Span) -> None:
        q = self._queue
        if len(q) < self._max_queue:
            q.append(span)
            if len(q) == self._max_batch:
                self._wake.set()
        else:
            self.exporter.dropped += 1

    # ---- hooks ----------------------------------------------------------------------------

    def start(self, ex: Exchange, traceparent: str | None, method: str, path: str) -> None:
        """The request arrived (app.py): its span, under the client's trace when it sent one."""
        if traceparent:
            m = _TRACEPARENT.fullmatch(traceparent.strip())
            if m is not None and m.group(2) != "0" * 32 and m.group(3) != "0" * 16 and m.group(1) != "ff":
                trace_id = m.group(2)
                sampled = (int(m.group(4), 16) & 1 == 1 if self._parent_based
                           else int(trace_id[16:], 16) < self._bound)
                ex.span = _Request(trace_id, m.group(3), sampled, time.time_ns(), ex.started, method, path)
                return
        t = getrandbits(128) or 1
        ex.span = _Request(f"{t:032x}", "", t & _LOW64 < self._bound, time.time_ns(), ex.started, method, path)

    def begin_attempt(self, ex: Exchange, dep: Deployment, number: int) -> None:
        r: _Request | None = ex.span
        if r is None:
            return
        span_id = f"{getrandbits(64) or 1:016x}"
        ex.traceparent = f"00-{r.trace_id}-{span_id}-{'01' if r.sampled else '00'}"  # sent upstream
        if r.sampled:
            op = OPERATIONS.get(ex.surface, "chat")
            provider = dep.provider.type_name
            r.attempt = (span_id, op, ex.model, PROVIDER_NAMES.get(provider, provider), dep.provider_name,
                         dep.upstream_model, number, ex.stream)

    def end_attempt(self, ex: Exchange, rec: LedgerRecord, started: float) -> None:
        r: _Request | None = ex.span
        if r is None or r.attempt is None:
            return
        span_id, op, model, provider_name, provider, deployment, number, streamed = r.attempt
        r.attempt = None
        wall, t0 = r.wall, r.started
        self._push((r.trace_id, span_id, r.span_id, f"{op} {model}", CLIENT, wall + int((started - t0) * 1e9),
                    wall + int((started + rec.latency_ms / 1000 - t0) * 1e9),
                    (op, model, provider_name, provider, deployment, streamed, rec.deployment or "",
                     rec.estimated, rec.error_type or None),
                    (number, rec.status, rec.input_tokens, rec.output_tokens, rec.cost_usd),
                    None if rec.ttft_ms is None else wall + int((started + rec.ttft_ms / 1000 - t0) * 1e9),
                    rec.status >= 500 or rec.status == 429))

    def end_request(self, ex: Exchange) -> None:
        r: _Request | None = ex.span
        if r is None:
            return
        ex.span = None
        if not r.sampled:
            return
        p, u, surface = ex.principal, ex.usage, ex.surface
        wall, t0 = r.wall, r.started
        self._push((
            r.trace_id, r.span_id, r.parent,
            # the route's surface: bounded, unlike paths with names in them
            r.method if surface == "unknown" else f"{r.method} {surface}", SERVER,
            wall, wall + int(((ex.finished_at or time.monotonic()) - t0) * 1e9),
            (r.method, r.path, surface, ex.model or None, None if p is None else p.consumer,
             None if p is None else p.group or None, ex.deployment or None, True if ex.cache_hit else None,
             ex.error_type or None),
            (ex.status, ex.attempts, ex.cost_usd,
             None if u is None else u.input_tokens, None if u is None else u.output_tokens),
            None if ex.first_token_at is None else wall + int((ex.first_token_at - t0) * 1e9), ex.status >= 500))

    def close(self) -> None:
        self.exporter.close()  # sends what is queued (blocking: call it off the loop)
