"""Prometheus metrics, one CollectorRegistry per Runtime (no module globals).

Label values come only from configured names (models, groups, providers), status codes and
the gateway's own error codes, so cardinality is bounded whatever clients send: a name that
is not configured is reported as "".
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gatehouse.evals.exported import EvalResults

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)

POOL_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

CONTENT_TYPE = CONTENT_TYPE_LATEST
T = TypeVar("T")

if TYPE_CHECKING:
    from gatehouse.metering.journal import Journal
    from gatehouse.metering.writer import LedgerWriter
    from gatehouse.observability.otlp_export import Exporter
    from gatehouse.policy.guardrails.audit import VerdictCounts
    from gatehouse.routing.health import Health
    from gatehouse.routing.metrics import RoutingCollector
    from gatehouse.routing.policy_metrics import PolicyRouteCounts
    from gatehouse.routing.table import ModelEntry
    from gatehouse.store.limiter_shared import LimitStats
    from gatehouse.upstream.pool import ConnectionLimit


class Metrics:
    """Every metric the gateway exports (docs/metering.md lists them)."""

    def __init__(self, models: Iterable[str], groups: Iterable[str], providers: Iterable[str],
                 backlog: Callable[[], float], consumer_label: bool = False):
        self.models = frozenset(models)
        self.groups = frozenset(groups)
        self.providers = frozenset(providers)
        self._limit_stats: LimitStats | None = None  # bound by track_limits (again after a reload)
        self._guardrail_verdicts: VerdictCounts | None = None
        self._cache: tuple[Counter, Counter, Counter] | None = None  # (track_cache)
        self._cache_bytes: Gauge | None = None
        self._routing: RoutingCollector | None = None
        self._policy_routes: PolicyRouteCounts | None = None
        self._tracing: _SpansDropped | None = None  # (track_tracing)
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("gatehouse_requests", "Requests to model routes, by final status.",
                                ["model", "group", "status"], registry=r)
        self.attempts = Counter("gatehouse_upstream_attempts", "Upstream attempts (one ledger record each).",
                                ["model", "provider", "status"], registry=r)
        self.tokens_input = Counter("gatehouse_tokens_input", "Input tokens, per ledger record.",
                                    ["model", "group"], registry=r)
        self.tokens_output = Counter("gatehouse_tokens_output", "Output tokens, per ledger record.",
                                     ["model", "group"], registry=r)
        self.tokens_cached = Counter("gatehouse_tokens_cached_input", "Input tokens read from a prompt cache.",
                                     ["model", "group"], registry=r)
        self.cost = Counter("gatehouse_cost_usd", "Cost in USD, per ledger record.", ["model", "group"], registry=r)
        self.unpriced = Counter("gatehouse_unpriced_requests", "Upstream attempts on a deployment with no price.",
                                ["model", "provider"], registry=r)
        self.request_duration = Histogram("gatehouse_request_duration_seconds", "Whole request duration.",
                                          ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("gatehouse_time_to_first_token_seconds", "Time to the first streamed token.",
                              ["model"], buckets=TTFT_BUCKETS, registry=r)
        self.upstream_duration = Histogram("gatehouse_upstream_duration_seconds", "Duration of one upstream attempt.",
                                           ["model", "provider"], buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter("gatehouse_errors", "Failed requests by error type.", ["type"], registry=r)
        self.rate_limited = Counter("gatehouse_rate_limited", "Requests refused with 429.", registry=r)
        self._add_detail(consumer_label)  # observability issue (20): a block of its own, below
        self.inflight = Gauge("gatehouse_inflight_requests", "Requests being served now.", registry=r)
        self.backlog = Gauge("gatehouse_ledger_backlog", "Ledger records journaled but not yet in the store.",
                             registry=r)
        self.backlog.set_function(backlog)
        self.evals = EvalResults()  # the last recorded `gatehouse eval` runs
        r.register(self.evals)
        self.pool_wait = Histogram("gatehouse_upstream_pool_wait_seconds",
                                   "Time a request queued for a connection under the provider's max_connections.",
                                   ["provider"], buckets=POOL_WAIT_BUCKETS, registry=r)
        self.pool_in_use = Gauge("gatehouse_upstream_connections_in_use",
                                 "Requests holding a connection to the provider (plain-http upstreams).",
                                 ["provider"], registry=r)
        self.pool_waiting = Gauge("gatehouse_upstream_pool_waiting", "Requests queued for a connection now.",
                                  ["provider"], registry=r)
        self.ejected = Gauge("gatehouse_upstream_ejected",
                             "1 while the deployment is ejected by its circuit breaker.",
                             ["provider", "deployment"], registry=r)
        self.config_generation = Gauge("gatehouse_config_generation",
                                       "Which config is live: 1 at start, +1 per successful reload.", registry=r)
        self.config_info = Info("gatehouse_config", "The live config file (sha256 prefix) and its generation.",
                                registry=r)
        self.config_reloads = Counter("gatehouse_config_reloads", "Config reloads by result (ok, rejected).",
                                      ["result"], registry=r)

    def config_loaded(self, generation: int, sha256: str) -> None:
        self.config_generation.set(generation)
        self.config_info.info({"generation": str(generation), "sha256": sha256[:12]})

    def reconfigure(self, models: Iterable[str], groups: Iterable[str], providers: Iterable[str]) -> None:
        """A reloaded config's names become the label values; the series live on (counters do
        not reset on a reload). Upstream gauges are re-bound by the next track_upstreams."""
        self.models, self.groups, self.providers = frozenset(models), frozenset(groups), frozenset(providers)
        self.pool_in_use.clear()
        self.pool_waiting.clear()
        self.ejected.clear()

    def model(self, name: str) -> str:
        return name if name in self.models else ""

    def group(self, name: str | None) -> str:
        return name if name in self.groups else ""

    def provider(self, name: str) -> str:
        return name if name in self.providers else ""

    def track_ledger(self, journal: Journal, writer: LedgerWriter) -> None:
        """The journal's disk and the ledger store, as the operator's alarms need them."""
        r = self.registry
        Gauge("gatehouse_journal_writable", "0 while the journal's disk refuses writes (records held in memory).",
              registry=r).set_function(_reader(lambda j: 0.0 if j.failing_since is not None else 1.0, journal))
        Gauge("gatehouse_journal_memory_records", "Ledger records held in memory because the disk refused them.",
              registry=r).set_function(_reader(lambda j: len(j.overflow), journal))
        r.register(_CounterOf("gatehouse_journal_write_errors", "Journal writes the disk refused.",
                              _reader(lambda j: j.write_errors, journal)))
        Gauge("gatehouse_ledger_store_up", "0 while the ledger store refuses writes (records wait in the journal).",
              registry=r).set_function(_reader(lambda w: 0.0 if w.failing_since is not None else 1.0, writer))

    def track_upstreams(self, limits: Mapping[str, ConnectionLimit], health: Health) -> None:
        for name, limit in limits.items():
            provider = self.provider(name)
            limit.observe_wait = self.pool_wait.labels(provider).observe
            self.pool_in_use.labels(provider).set_function(_reader(lambda lim: lim.active, limit))
            self.pool_waiting.labels(provider).set_function(_reader(lambda lim: len(lim.waiters), limit))
        for (provider, deployment), breaker in health.breakers.items():
            self.ejected.labels(self.provider(provider), deployment).set_function(
                _reader(lambda b: 0.0 if b.is_available() else 1.0, breaker))

    def track_routing(self, models: Mapping[str, ModelEntry]) -> None:
        """Routing's series (routing/metrics.py), read from the live runtime's models."""
        if self._routing is None:
            from gatehouse.routing.metrics import RoutingCollector

            self._routing = RoutingCollector()
            self.registry.register(self._routing)
        self._routing.models = dict(models)

    def track_policy_routes(self) -> PolicyRouteCounts:
        """Compliance decisions and virtual models' choices (routing/policy_metrics.py), counted
        in plain dicts; once per process: a reload keeps counting."""
        if self._policy_routes is None:
            from gatehouse.routing.policy_metrics import register

            self._policy_routes = register(self.registry)
        return self._policy_routes

    def track_tracing(self, exporter: Exporter) -> None:
        """gatehouse_trace_spans_dropped_total{reason}: spans that never reached the collector,
        because the export queue was full (`queue_full`) or their export failed (`export_failed`);
        read from the exporter at scrape time (observability/otlp_export.py), nothing per request."""
        if self._tracing is None:  # once per process: a reload keeps the tracer
            self._tracing = _SpansDropped(exporter)
            self.registry.register(self._tracing)

    def track_inflight(self, read: Callable[[], float]) -> None:
        self.inflight.set_function(read)

    # ---- guardrails (policy/guardrails; docs/guardrails.md) ----------------------------------

    def track_guardrails(self) -> VerdictCounts:
        """gatehouse_guardrail_verdicts_total: one per check that ran on a request's input or
        output, by verdict (pass | match | skipped) and the check's action. Made only when a
        guardrail policy is configured; counted in bulk (policy/guardrails/audit.py)."""
        from gatehouse.policy.guardrails.audit import VerdictCounts

        if self._guardrail_verdicts is None:  # once per process: a reload keeps counting
            self._guardrail_verdicts = VerdictCounts(self.registry)
        return self._guardrail_verdicts

    # ---- response cache (policy/cache.py; docs/cache.md) ---------------------------------------

    def track_cache(self, held: Callable[[], float]) -> tuple[Counter, Counter, Counter]:
        """gatehouse_cache_lookups_total{model,result} (hit | miss | bypass),
        gatehouse_cache_bypasses_total{model,reason}, gatehouse_cache_stored_total{model} and the
        gauge gatehouse_cache_bytes (answers held in process; `held` is re-bound on reload). Made
        only when a cache is configured."""
        if self._cache is None:  # once per process: a reload keeps counting
            r = self.registry
            self._cache = (
                Counter("gatehouse_cache_lookups", "Response cache lookups by result.", ["model", "result"],
                        registry=r),
                Counter("gatehouse_cache_bypasses", "Requests the response cache let through, by reason.",
                        ["model", "reason"], registry=r),
                Counter("gatehouse_cache_stored", "Answers stored in the response cache.", ["model"], registry=r),
            )
            self._cache_bytes = Gauge("gatehouse_cache_bytes", "Bytes of answers held by in-process response caches.",
                                      registry=r)
        assert self._cache_bytes is not None
        self._cache_bytes.set_function(held)
        return self._cache

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # ---- observability issue (20): per deployment, per consumer (opt-in), limits, process --------
    # Kept apart from the metrics above so that other changes to this file merge cleanly.
    # docs/observability.md lists every metric and the Kong/LiteLLM names they replace.

    def _add_detail(self, consumer_label: bool) -> None:
        r = self.registry
        self.consumer_label = consumer_label
        self._consumers: dict[str, str] = {}
        self.itl = Histogram("gatehouse_inter_token_latency_seconds",
                             "Mean time between output tokens of a streamed answer (one observation per request).",
                             ["model"], buckets=ITL_BUCKETS, registry=r)
        self.deployment_duration = Histogram("gatehouse_deployment_attempt_duration_seconds",
                                             "Duration of one upstream attempt, per deployment.",
                                             ["provider", "deployment"], buckets=LATENCY_BUCKETS, registry=r)
        self.deployment_errors = Counter("gatehouse_deployment_errors",
                                         "Upstream attempts that failed (5xx, 429, timeout, connection), "
                                         "per deployment and error type.",
                                         ["provider", "deployment", "type"], registry=r)
        self.limit_rejections = Counter("gatehouse_limit_rejections",
                                        "Requests refused with 429 by limits, budgets or the upstream, by group, "
                                        "consumer (\"\" unless metrics.consumer_label) and reason.",
                                        ["group", "consumer", "reason"], registry=r)
        if consumer_label:  # opt-in: one series per consumer (capped, see consumer())
            labels = ["consumer", "group", "model"]
            self.consumer_requests = Counter("gatehouse_consumer_requests", "Requests to model routes, per consumer.",
                                             [*labels, "status"], registry=r)
            self.consumer_tokens_input = Counter("gatehouse_consumer_tokens_input", "Input tokens, per consumer.",
                                                 labels, registry=r)
            self.consumer_tokens_output = Counter("gatehouse_consumer_tokens_output", "Output tokens, per consumer.",
                                                  labels, registry=r)
            self.consumer_cost = Counter("gatehouse_consumer_cost_usd", "Cost in USD, per consumer.", labels,
                                         registry=r)
        self._attempt_detail: dict[tuple[str, str, int, str | None], tuple[Histogram, Counter | None]] = {}
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, fds...
        PlatformCollector(registry=r)  # python_info

    def consumer(self, name: str | None) -> str:
        """The consumer label: the name for the first CONSUMER_LABEL_LIMIT consumers seen, then
        "_other" (JWT identities could otherwise grow the series without bound)."""
        if not self.consumer_label or not name:
            return ""
        label = self._consumers.get(name)
        if label is None:
            if len(self._consumers) >= CONSUMER_LABEL_LIMIT:
                return "_other"
            label = self._consumers[name] = name
        return label

    def track_limits(self, stats: LimitStats) -> None:
        """The limits store (Redis): up/down and errors, read at scrape time. A reload that
        builds a new limiter calls this again: the series stay, and read the new one's stats."""
        first = self._limit_stats is None
        self._limit_stats = stats
        if not first:
            return
        r = self.registry
        Gauge("gatehouse_limits_store_up", "0 while the limits store (Redis) is unreachable; 1 otherwise "
              "(always 1 for the in-process store).", registry=r).set_function(
            lambda: 1.0 if self._stats().store_up else 0.0)
        r.register(_CounterOf("gatehouse_limits_store_errors", "Errors talking to the limits store (Redis).",
                              lambda: self._stats().store_errors))
        r.register(_CounterOf("gatehouse_limits_fallback_admissions",
                              "Requests admitted by the per-replica fallback while Redis was unreachable.",
                              lambda: self._stats().fallback_admissions))

    def _stats(self) -> LimitStats:
        assert self._limit_stats is not None
        return self._limit_stats

    def count_attempt(self, provider: str, deployment: str, status: int, error_type: str | None,
                      seconds: float) -> None:
        """One upstream attempt ended (metering/meter.py)."""
        key = (provider, deployment, status, error_type)
        series = self._attempt_detail.get(key)
        if series is None:
            p = self.provider(provider)
            failed = (status >= 500 or status == 429) and error_type not in NOT_UPSTREAM_FAILURES
            series = (self.deployment_duration.labels(p, deployment),
                      self.deployment_errors.labels(p, deployment, error_type or f"http_{status}") if failed else None)
            if len(self._attempt_detail) < 10_000:
                self._attempt_detail[key] = series
        duration, errors = series
        duration.observe(seconds)
        if errors is not None:
            errors.inc()

    def count_request(self, model: str, group: str | None, consumer: str | None, status: int,
                      error_type: str | None, itl: float | None, input_tokens: int, output_tokens: int,
                      cost: float) -> None:
        """One model request ended (metering/meter.py, after the request metrics above)."""
        if itl is not None:
            self.itl.labels(self.model(model)).observe(itl)
        if status == 429:
            self.limit_rejections.labels(self.group(group), self.consumer(consumer), error_type or "http_429").inc()
        if self.consumer_label:
            labels = (self.consumer(consumer), self.group(group), self.model(model))
            self.consumer_requests.labels(*labels, str(status)).inc()
            if input_tokens:
                self.consumer_tokens_input.labels(*labels).inc(input_tokens)
            if output_tokens:
                self.consumer_tokens_output.labels(*labels).inc(output_tokens)
            if cost:
                self.consumer_cost.labels(*labels).inc(cost)


ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5)
CONSUMER_LABEL_LIMIT = 1000
# Attempts that ended for a reason that is not the upstream's fault.
NOT_UPSTREAM_FAILURES = frozenset({"client_closed", "cancelled", "internal"})


def _reader(read: Callable[[T], float], obj: T) -> Callable[[], float]:
    """A gauge callback reading `obj` (bound here: a lambda in a loop would see the last one)."""
    return lambda: read(obj)


class _SpansDropped:
    """gatehouse_trace_spans_dropped_total, by reason, from the trace exporter's own counts."""

    def __init__(self, exporter: Exporter):
        self.exporter = exporter

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("gatehouse_trace_spans_dropped",
                                     "Trace spans not exported: the queue was full, or the export failed.",
                                     labels=["reason"])
        family.add_metric(["queue_full"], self.exporter.dropped)
        family.add_metric(["export_failed"], self.exporter.failed)
        yield family


class _CounterOf:
    """A counter whose value another object keeps (read at scrape time)."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float]):
        self.name, self.documentation, self.read = name, documentation, read

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.read())
