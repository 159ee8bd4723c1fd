"""Metering: a ledger record per upstream attempt, the usage headers, metrics and access logs.

The request path calls in at these points, all cheap and none touching the database:

- `MeterHook`, an attempt hook (gateway/attempts.py): `started` journals a `begin` line before
  each upstream call, so even a process killed mid-request leaves a trace (an `interrupted`
  record); `ended` journals the `end` line: at once for a failed attempt, just before a
  non-streamed answer is sent (and sets the x-gatehouse-tokens/cost headers, so a client holding
  its answer implies a journaled record), after the last byte of a stream;
- `MeteringStep` (a policy step) refuses unpriced models and, at settle, records a cache hit;
- `observe(ex)` (app.py, after every request) updates request metrics and the access log.

The background LedgerWriter moves journaled records into the store in batches.
"""
from __future__ import annotations

import itertools
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from gatehouse.config import Config
from gatehouse.errors import GatehouseError, PermissionDenied, ServiceUnavailable
from gatehouse.metering.journal import Journal, Segment
from gatehouse.metering.pricing import Price, cost_usd, price_of
from gatehouse.metering.record import LedgerRecord
from gatehouse.metering.writer import LedgerWriter
from gatehouse.observability.access_log import AccessLog
from gatehouse.observability.metrics import Metrics
from gatehouse.observability.tracing import Tracing
from gatehouse.store.sql import SqlStore
from gatehouse.supervisor import journal_base, journal_dir_for, worker_index
from gatehouse.types import Usage

if TYPE_CHECKING:
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.routing.table import Deployment, ModelEntry

log = logging.getLogger("gatehouse.metering")

# Routes that are not model traffic: no request metrics (the access log still has them).
UNMETERED_SURFACES = frozenset({"ops", "admin", "metrics", "usage", "models", "unknown", "stored_responses"})
# The attempt ended without usage because the client or the gateway stopped it: the
# prompt was processed upstream, so it is billed at its estimate.
_STOPPED = frozenset({"client_closed", "cancelled", "internal"})


class Attempt:
    __slots__ = ("record", "segment", "started", "price")

    def __init__(self, record: LedgerRecord, segment: Segment | None, started: float, price: Price | None):
        self.record = record
        self.segment = segment
        self.started = started
        self.price = price


def _money(cost: float) -> str:
    return f"{cost:.10f}".rstrip("0").rstrip(".") or "0"


class Meter:
    def __init__(self, cfg: Config, models: dict[str, ModelEntry], store: SqlStore, data_dir: Path,
                 previous: Meter | None = None):
        m = cfg.metering
        self.shutdown_flush_seconds = m.shutdown_flush_seconds
        # A reload hands the journal (one owner per directory: its flock), the ledger writer, the
        # metric series and the tracer over to the new runtime's Meter; metering, metrics.consumer_label
        # and tracing settings are restart-only (gatehouse/reload.py).
        self.owns_ledger = previous is None
        if previous is None:
            self.journal = Journal(journal_dir_for(journal_base(cfg, data_dir), worker_index()),  # one per worker
                                   m.journal_fsync_seconds, memory_limit=m.journal_memory_records)
            self.writer = LedgerWriter(self.journal, store, m.batch_size, m.flush_seconds)
            self.metrics = Metrics(models, cfg.groups, cfg.providers,
                                   lambda: self.journal.backlog + len(self.journal.overflow),
                                   consumer_label=cfg.metrics.consumer_label)
            self.metrics.track_ledger(self.journal, self.writer)
            self.tracing: Tracing | None = Tracing(cfg.tracing) if cfg.tracing.enabled else None
            if self.tracing is not None:
                self.metrics.track_tracing(self.tracing.exporter)
        else:
            # (Runtime.activate re-labels the metrics once this runtime goes live.)
            self.journal, self.writer, self.metrics = previous.journal, previous.writer, previous.metrics
            self.tracing = previous.tracing
        self.access_log = AccessLog(cfg.logging.access_log,
                                    sys.stdout.buffer if cfg.logging.access_log_stream == "stdout" else None)
        self.prices: dict[tuple[str, Deployment], Price | None] = {}
        for model_cfg in cfg.models:
            for dep_cfg, dep in zip(model_cfg.deployments, models[model_cfg.name].deployments):
                self.prices[(model_cfg.name, dep)] = price_of(dep_cfg)
        self.unpriced_models = frozenset(name for (name, _), p in self.prices.items() if p is None)
        self.unpriced_policy = cfg.pricing.unpriced
        self._warned: set[tuple[str, str, str]] = set()
        # Record ids: random per process, then a counter (unique without a syscall each).
        self._id_prefix: str = os.urandom(8).hex() if previous is None else previous._id_prefix
        self._ids: itertools.count[int] = itertools.count(1) if previous is None else previous._ids
        # Labelled metric children, looked up once per label set rather than per request.
        self._attempt_series: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._request_series: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self.step = MeteringStep(self)
        self.hook = MeterHook(self)

    async def start(self) -> None:
        import asyncio

        if not self.owns_ledger:
            return  # handed over: already open and draining
        replayed = await asyncio.to_thread(self.journal.open)
        if replayed:
            log.info("journal: %d ledger records to write from before the last stop", replayed)
            self.journal.has_data.set()
        self.writer.start()

    async def close(self, keep_ledger: bool = False) -> None:
        """keep_ledger: a reloaded runtime's Meter carries on with the journal and writer."""
        if not keep_ledger:
            await self.writer.stop(self.shutdown_flush_seconds)
        self.access_log.close()
        if self.tracing is not None and not keep_ledger:  # a reload's successor keeps the tracer
            import asyncio

            await asyncio.to_thread(self.tracing.close)

    # ---- attempts (MeterHook) ------------------------------------------------------------------

    def begin_attempt(self, ex: Exchange, dep: Deployment) -> None:
        previous, ex.metering = ex.metering, None
        if previous is not None:  # not ended by the caller: close it rather than lose it
            self._end(ex, previous, ex.status or 502, ex.error_type or "abandoned", None)
        number = ex.attempts = ex.attempts + 1
        price = self.prices.get((dep.model_name or ex.model, dep))  # a fallback's deployment: its own model's
        p = ex.principal
        prompt = ex.prompt_estimate
        c, v = ex.compliance, ex.virtual_route
        record = LedgerRecord(
            id=self._next_id(), request_id=ex.gateway_id, client_request_id=ex.client_request_id,
            attempt=number, ts=time.time(),
            consumer=p.consumer if p else "", model=ex.model, surface=ex.surface,
            group=p.group if p else None, key_id=p.key_id if p else None,
            deployment=dep.upstream_model, provider=dep.provider_name, streamed=ex.stream,
            input_tokens=prompt, cost_usd=cost_usd(price, Usage(input_tokens=prompt)) if prompt else 0.0,
            priced=price is not None, estimated=True, route=ex.route_reason,
            data_class=c.get("data_class") if c else None, routed_to=v.get("routed_to") if v else None,
            phase="begin",
        )
        ex.metering = Attempt(record, self.journal.begin(record), time.monotonic(), price)
        if self.tracing is not None:
            self.tracing.begin_attempt(ex, dep)

    def _next_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):08x}"

    def fail_attempt(self, ex: Exchange, err: GatehouseError) -> None:
        """The attempt failed before any answer: recorded as the client would see the error."""
        attempt, ex.metering = ex.metering, None
        if attempt is not None:
            self._end(ex, attempt, err.status, err.code, None)

    def end_attempt(self, ex: Exchange) -> None:
        """End the attempt with what the exchange holds. A non-streamed answer about to be sent
        (not an error) gets its usage and cost in headers."""
        attempt, ex.metering = ex.metering, None
        if attempt is None:
            return
        rec = self._end(ex, attempt, ex.status, ex.error_type, ex.usage)
        if not ex.stream and ex.status < 400:
            h = ex.response_headers
            h["x-gatehouse-tokens-input"] = str(rec.input_tokens)
            h["x-gatehouse-tokens-output"] = str(rec.output_tokens)
            h["x-gatehouse-cost-usd"] = _money(rec.cost_usd)

    # ---- settling (pipeline) ------------------------------------------------------------------

    def settle(self, ex: Exchange) -> None:
        if ex.metering is not None:  # (the request path ends its attempts; this is a safety net)
            self.end_attempt(ex)
        elif ex.cache_hit:  # answered by the cache step: no upstream attempt
            self._cache_hit(ex)

    def _usage(self, ex: Exchange, usage: Usage | None, error_type: str | None) -> Usage:
        if usage is not None:
            return usage
        if error_type in _STOPPED:
            return Usage(input_tokens=ex.prompt_estimate, estimated=True)
        return Usage()  # refused or failed upstream: nothing was generated

    def _end(self, ex: Exchange, attempt: Attempt, status: int, error_type: str | None,
             usage: Usage | None) -> LedgerRecord:
        now = time.monotonic()
        u = self._usage(ex, usage, error_type)
        first = ex.first_token_at
        rec = msgspec.structs.replace(
            attempt.record, phase="end", status=status, error_type=error_type,
            input_tokens=u.input_tokens, output_tokens=u.output_tokens, cached_tokens=u.cache_read_tokens,
            cost_usd=cost_usd(attempt.price, u), latency_ms=round((now - attempt.started) * 1000, 3),
            ttft_ms=round((first - attempt.started) * 1000, 3) if first and first >= attempt.started else None,
            streamed=ex.stream, estimated=u.estimated,
        )
        ex.cost_usd += rec.cost_usd
        self.journal.end(rec, attempt.segment)
        self._count(rec)
        if self.tracing is not None:
            self.tracing.end_attempt(ex, rec, attempt.started)
        return rec

    def _cache_hit(self, ex: Exchange) -> None:
        p = ex.principal
        u = ex.usage or Usage()
        rec = LedgerRecord(
            id=self._next_id(), request_id=ex.gateway_id, client_request_id=ex.client_request_id, attempt=0,
            ts=time.time() - (time.monotonic() - ex.started), consumer=p.consumer if p else "",
            model=ex.model, surface=ex.surface, group=p.group if p else None, key_id=p.key_id if p else None,
            status=ex.status, error_type=ex.error_type, input_tokens=u.input_tokens, output_tokens=u.output_tokens,
            cached_tokens=u.cache_read_tokens, latency_ms=round((time.monotonic() - ex.started) * 1000, 3),
            streamed=ex.stream, cache_hit=True, estimated=u.estimated,
            data_class=c.get("data_class") if (c := ex.compliance) else None,
            routed_to=v.get("routed_to") if (v := ex.virtual_route) else None,
        )
        self.journal.end(rec)
        self._count(rec)

    def _count(self, rec: LedgerRecord) -> None:
        key = (rec.model, rec.group, rec.provider, rec.status)
        series = self._attempt_series.get(key)
        if series is None:
            m = self.metrics
            model, group, provider = m.model(rec.model), m.group(rec.group), m.provider(rec.provider)
            series = (m.attempts.labels(model, provider, str(rec.status)), m.tokens_input.labels(model, group),
                      m.tokens_output.labels(model, group), m.tokens_cached.labels(model, group),
                      m.cost.labels(model, group), m.upstream_duration.labels(model, provider),
                      m.unpriced.labels(model, provider))
            if len(self._attempt_series) < 10_000:
                self._attempt_series[key] = series
        attempts, tokens_in, tokens_out, tokens_cached, cost, duration, unpriced = series
        attempts.inc()
        if rec.input_tokens:  # (the series exist from labels(); skipping zeros saves a lock each)
            tokens_in.inc(rec.input_tokens)
        if rec.output_tokens:
            tokens_out.inc(rec.output_tokens)
        if rec.cached_tokens:
            tokens_cached.inc(rec.cached_tokens)
        if rec.cost_usd:
            cost.inc(rec.cost_usd)
        if rec.attempt:
            duration.observe(rec.latency_ms / 1000)
            self.metrics.count_attempt(rec.provider, rec.deployment, rec.status, rec.error_type, rec.latency_ms / 1000)
            if not rec.priced:
                unpriced.inc()
                self._warn_unpriced(rec)

    def _warn_unpriced(self, rec: LedgerRecord) -> None:
        key = (rec.model, rec.provider, rec.deployment)
        if self.unpriced_policy == "warn" and key not in self._warned:
            self._warned.add(key)
            log.warning("model '%s' deployment %s/%s has no price: its traffic is recorded at $0 "
                        "(set input_per_mtok/output_per_mtok or gpu_cost_per_hour)", *key)

    # ---- after every request (app.py) ----------------------------------------------------------

    def observe(self, ex: Exchange, method: str, path: str) -> None:
        now = time.monotonic()
        finished = ex.finished_at or now
        p = ex.principal
        if self.tracing is not None:
            self.tracing.end_request(ex, method, path, finished)
        if ex.surface not in UNMETERED_SURFACES:
            group = p.group if p else None
            key = (ex.model, group, ex.status)
            series = self._request_series.get(key)
            if series is None:
                m = self.metrics
                model = m.model(ex.model)
                series = (m.requests.labels(model, m.group(group), str(ex.status)), m.request_duration.labels(model),
                          m.ttft.labels(model))
                if len(self._request_series) < 10_000:
                    self._request_series[key] = series
            requests, duration, ttft = series
            requests.inc()
            duration.observe(finished - ex.started)
            if ex.stream and ex.first_token_at is not None:
                ttft.observe(ex.first_token_at - ex.started)
            if ex.status >= 400:
                self.metrics.errors.labels(ex.error_type or f"http_{ex.status}").inc()
                if ex.status == 429:
                    self.metrics.rate_limited.inc()
            self._detail(ex, group, finished)
        if self.access_log.enabled and not (ex.surface == "ops" and ex.status < 400):  # not every probe
            u = ex.usage
            self.access_log.write({
                "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "request_id": ex.gateway_id, "client_request_id": ex.client_request_id, "method": method, "path": path,
                "surface": ex.surface,
                "consumer": p.consumer if p else None, "group": p.group if p else None,
                "key_id": p.key_id if p else None, "model": ex.model or None,
                "provider": ex.provider or None, "deployment": ex.deployment or None,
                "status": ex.status, "error": ex.error_type, "stream": ex.stream,
                "attempts": ex.attempts,
                # why the last attempt went to its deployment (routing/reasons.py)
                **({"route_reason": ex.route_reason} if ex.attempts else {}),
                "tokens_in": u.input_tokens if u else 0, "tokens_out": u.output_tokens if u else 0,
                "estimated": u.estimated if u else False, "cost_usd": round(ex.cost_usd, 10),
                "latency_ms": round((finished - ex.started) * 1000, 3),
                "ttft_ms": round((ex.first_token_at - ex.started) * 1000, 3) if ex.first_token_at else None,
                # which guardrail checks ran and what they decided (never the matched text)
                **({"guardrails": g} if (g := ex.guard_audit) else {}),
                # served by a fallback model, and why (routing/route.py; never a URL)
                **({"route": r} if (r := ex.response_headers.get("x-gatehouse-route")) else {}),
                # compliance routing: the request's data class, why, and what it did (never the text)
                **({"compliance": c} if (c := ex.compliance) else {}),
                **({"routing": v} if (v := ex.virtual_route) else {}),  # a virtual model's choice
            })

    def _detail(self, ex: Exchange, group: str | None, finished: float) -> None:
        """Inter-token latency, rate-limit reasons and the opt-in per-consumer series."""
        u = ex.usage
        out = u.output_tokens if u else 0
        first = ex.first_token_at
        itl = (finished - first) / (out - 1) if ex.stream and first is not None and out > 1 else None
        p = ex.principal
        self.metrics.count_request(ex.model, group, p.consumer if p else None, ex.status, ex.error_type, itl,
                                   u.input_tokens if u else 0, out, ex.cost_usd)


class MeteringStep:
    """The pipeline step: refuses unpriced models under `pricing.unpriced: deny`, and
    journals the attempt that is still open when the request settles."""

    name = "metering"

    def __init__(self, meter: Meter):
        self.meter = meter
        self.deny_unpriced = meter.unpriced_policy == "deny"

    async def admit(self, ex: Exchange) -> None:
        if self.meter.journal.full:  # the disk refuses the journal and the memory buffer is full
            raise ServiceUnavailable("The gateway cannot record usage right now; retry on another instance.",
                                     code="ledger_unavailable", headers={"retry-after": "5"})
        if self.deny_unpriced and ex.model in self.meter.unpriced_models:
            raise PermissionDenied(f"The model '{ex.model}' has no price configured and unpriced use is not "
                                   "allowed here.", param="model", code="model_unpriced")

    async def settle(self, ex: Exchange) -> None:
        self.meter.settle(ex)


class MeterHook:
    """The attempt hook (gateway/attempts.py): a ledger record per upstream attempt."""

    __slots__ = ("meter",)

    def __init__(self, meter: Meter):
        self.meter = meter

    def started(self, ex: Exchange, dep: Deployment) -> None:
        self.meter.begin_attempt(ex, dep)

    def answered(self, ex: Exchange, dep: Deployment) -> None:
        pass

    def ended(self, ex: Exchange, dep: Deployment, error: GatehouseError | None) -> None:
        if error is not None:
            self.meter.fail_attempt(ex, error)
        else:
            self.meter.end_attempt(ex)
