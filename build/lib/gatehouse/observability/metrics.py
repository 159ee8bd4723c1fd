"""Prometheus metrics, one CollectorRegistry per Runtime (no module globals).

Label values come only from configured names (models, groups, providers), status codes and
the gateway's own error codes, so cardinality is bounded whatever clients send: a name that
is not configured is reported as "".
"""
from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)

CONTENT_TYPE = CONTENT_TYPE_LATEST


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

    def model(self, name: str) -> str:
        return name if name in self.models else ""

    def group(self, name: str | None) -> str:
        return name if name in self.groups else ""

    def provider(self, name: str) -> str:
        return name if name in self.providers else ""

    def track_inflight(self, read: Callable[[], float]) -> None:
        self.inflight.set_function(read)

    def render(self) -> bytes:
        return generate_latest(self.registry)
