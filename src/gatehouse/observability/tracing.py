"""OpenTelemetry traces (optional: `pip install 'llm-gatehouse[otel]'`, `tracing.enabled: true`).

One span per request (SERVER) and one per upstream attempt (CLIENT, a child: retries and
failovers show as siblings), with GenAI semantic-convention attributes (gen_ai.operation.name,
gen_ai.request.model, gen_ai.response.model, gen_ai.provider.name, gen_ai.usage.*_tokens) and the
gateway's own (consumer, group, deployment, attempt, cost); the first token is an event. A
client's W3C `traceparent` becomes the parent, and each attempt's context goes upstream in a
`traceparent` header. Prompts and completions never go into spans.

The metering hooks call in (metering/meter.py); with tracing off `Meter.tracing` is None and
the request path pays one attribute test per hook. Spans are exported in batches by the SDK's
own thread (OTLP over HTTP), never on the event loop.
"""
from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any, Callable

from gatehouse.config import ConfigError, TracingConfig

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from gatehouse.metering.record import LedgerRecord
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.routing.table import Deployment

OPERATIONS = {"embeddings": "embeddings", "completions": "text_completion", "embed": "embeddings"}
PROVIDER_NAMES = {"bedrock": "aws.bedrock", "gemini": "gcp.gemini"}
# W3C trace context: version-traceid-parentid-flags (a later version may append fields).
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?")


class Tracing:
    def __init__(self, cfg: TracingConfig):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
            from opentelemetry.trace import (
                NonRecordingSpan,
                SpanContext,
                SpanKind,
                Status,
                StatusCode,
                TraceFlags,
                set_span_in_context,
            )
        except ImportError:
            raise ConfigError("tracing.enabled: the OpenTelemetry packages are not installed "
                              "(pip install 'llm-gatehouse[otel]')") from None
        sampler = ParentBased(TraceIdRatioBased(cfg.sample_ratio)) if cfg.sample_ratio is not None else None
        self.provider: TracerProvider = TracerProvider(
            resource=Resource.create({"service.name": cfg.service_name}), sampler=sampler)
        self.provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=cfg.endpoint, headers=cfg.headers or None)))
        self.tracer: Tracer = self.provider.get_tracer("gatehouse")
        self._set_span_in_context = set_span_in_context
        self._remote: Callable[[int, int, int], Any] = lambda trace_id, span_id, flags: set_span_in_context(NonRecordingSpan(SpanContext(
            trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))))
        self._server, self._client = SpanKind.SERVER, SpanKind.CLIENT
        self._error = Status(StatusCode.ERROR)

    # ---- hooks ----------------------------------------------------------------------------

    def start(self, ex: Exchange, traceparent: str | None, method: str, path: str) -> None:
        """The request arrived (app.py): its span, under the client's trace when it sent one."""
        wall = time.time_ns()
        parent = None
        if traceparent:
            m = _TRACEPARENT.fullmatch(traceparent.strip())
            if m is not None and m.group(2) != "0" * 32 and m.group(3) != "0" * 16 and m.group(1) != "ff":
                parent = self._remote(int(m.group(2), 16), int(m.group(3), 16), int(m.group(4), 16) & 1)
        ex.trace_wall = (wall, ex.started, method)
        ex.span = self.tracer.start_span(
            method, context=parent, kind=self._server, start_time=wall,
            attributes={"http.request.method": method, "url.path": path})

    def begin_attempt(self, ex: Exchange, dep: Deployment, number: int) -> None:
        request = ex.span
        if request is None:
            return
        op = OPERATIONS.get(ex.surface, "chat")
        span = self.tracer.start_span(
            f"{op} {ex.model}", context=self._set_span_in_context(request), kind=self._client,
            attributes={"gen_ai.operation.name": op, "gen_ai.request.model": ex.model,
                        "gen_ai.provider.name": PROVIDER_NAMES.get(dep.provider.type_name, dep.provider.type_name),
                        "gatehouse.provider": dep.provider_name, "gatehouse.deployment": dep.upstream_model,
                        "gatehouse.attempt": number, "gatehouse.streamed": ex.stream})
        ex.attempt_span = span
        c = span.get_span_context()
        ex.traceparent = f"00-{c.trace_id:032x}-{c.span_id:016x}-{c.trace_flags:02x}"

    def end_attempt(self, ex: Exchange, rec: LedgerRecord, started: float) -> None:
        span: Span | None = ex.attempt_span
        ex.attempt_span = None
        if span is None:
            return
        span.set_attributes({
            "gen_ai.response.model": rec.deployment or "", "gen_ai.usage.input_tokens": rec.input_tokens,
            "gen_ai.usage.output_tokens": rec.output_tokens, "gatehouse.cost_usd": rec.cost_usd,
            "gatehouse.usage_estimated": rec.estimated, "http.response.status_code": rec.status})
        if rec.ttft_ms is not None:
            span.add_event("gen_ai.first_token", timestamp=self._wall(ex, started + rec.ttft_ms / 1000))
        if rec.error_type:
            span.set_attribute("error.type", rec.error_type)
        if rec.status >= 500 or rec.status == 429:
            span.set_status(self._error)
        span.end(end_time=self._wall(ex, started + rec.latency_ms / 1000))

    def end_request(self, ex: Exchange) -> None:
        span: Span | None = ex.span
        ex.span = None
        if span is None:
            return
        p = ex.principal
        attrs: dict[str, Any] = {"http.response.status_code": ex.status, "gatehouse.surface": ex.surface,
                                 "gatehouse.attempts": ex.attempts, "gatehouse.cost_usd": ex.cost_usd}
        if ex.model:
            attrs["gen_ai.request.model"] = ex.model
        if p is not None:
            attrs["gatehouse.consumer"] = p.consumer
            if p.group:
                attrs["gatehouse.group"] = p.group
        if ex.deployment:
            attrs["gatehouse.deployment"] = ex.deployment
        if ex.cache_hit:
            attrs["gatehouse.cache_hit"] = True
        u = ex.usage
        if u is not None:
            attrs["gen_ai.usage.input_tokens"] = u.input_tokens
            attrs["gen_ai.usage.output_tokens"] = u.output_tokens
        if ex.error_type:
            attrs["error.type"] = ex.error_type
        span.set_attributes(attrs)
        if ex.surface != "unknown":  # the route's surface: bounded, unlike paths with names in them
            span.update_name(f"{ex.trace_wall[2] if ex.trace_wall else ''} {ex.surface}")
        if ex.first_token_at is not None:
            span.add_event("gen_ai.first_token", timestamp=self._wall(ex, ex.first_token_at))
        if ex.status >= 500:
            span.set_status(self._error)
        span.end(end_time=self._wall(ex, ex.finished_at or time.monotonic()))

    def close(self) -> None:
        self.provider.shutdown()  # flushes what is queued (blocking: call it off the loop)

    @staticmethod
    def _wall(ex: Exchange, monotonic: float) -> int:
        assert ex.trace_wall is not None  # (set by start(), before any other hook)
        wall, started, _ = ex.trace_wall
        return wall + int((monotonic - started) * 1e9)
