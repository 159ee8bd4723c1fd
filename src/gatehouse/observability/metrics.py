"""Prometheus metrics, one CollectorRegistry per Runtime (no module globals).

Label values come only from configured names (models, groups, providers), status codes and
the gateway's own error codes, so cardinality is bounded whatever clients send: a name that
is not configured is reported as "".
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics,
                               generate_latest)
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
    from gatehouse.routing.health import Health
    from gatehouse.upstream.pool import ConnectionLimit


class Metrics:
    """Every metric the gateway exports (docs/metering.md lists them)."""

    def __init__(self, models: Iterable[str], groups: Iterable[str], providers: Iterable[str],
                 backlog: Callable[[], float]):
        disable_created_metrics()  # `*_created` series double the scrape and nobody graphs them
        self.models = frozenset(models)
        self.groups = frozenset(groups)
        self.providers = frozenset(providers)
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

    def track_inflight(self, read: Callable[[], float]) -> None:
        self.inflight.set_function(read)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _reader(read: Callable[[T], float], obj: T) -> Callable[[], float]:
    """A gauge callback reading `obj` (bound here: a lambda in a loop would see the last one)."""
    return lambda: read(obj)


class _CounterOf:
    """A counter whose value another object keeps (read at scrape time)."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float]):
        self.name, self.documentation, self.read = name, documentation, read

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.read())
