"""Policy routing's Prometheus series: compliance decisions by data class, virtual models'
choices by route and signal (docs/policy-routing.md#metrics).

Counted cheaply: a request adds one to a plain dict entry keyed by a tuple of configured names
(policy/compliance.py, routing/virtual.py); the labelled counters are built from the dicts when
the registry is read (a scrape), as the guardrail verdicts are (policy/guardrails/audit.py).
Labels come from the config only (classes, detectors and guardrail checks, router and model
names) so their number is bounded whatever clients send. One `PolicyRouteCounts` per process
(observability/metrics.py `track_policy_routes`): a reload keeps counting.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry


class PolicyRouteCounts:
    """`compliance[(data_class, action, reason)]` and `virtual[(router, routed_to, signal)]`:
    requests so far (`signal`: rule, semantic, classifier, default, cheapest or best)."""

    def __init__(self) -> None:
        self.compliance: dict[tuple[str, str, str], int] = {}
        self.virtual: dict[tuple[str, str, str], int] = {}

    def describe(self) -> list[CounterMetricFamily]:
        return []  # unchecked registration: the series depend on the config

    def collect(self) -> Iterator[CounterMetricFamily]:
        decisions = CounterMetricFamily(
            "gatehouse_compliance_decisions",
            "Requests to class-restricted models, by data class, action (pass, reroute, deny) and what set "
            "the class (group, header, a detector, a guardrail check, uninspectable, default).",
            labels=["data_class", "action", "reason"])
        for (cls, action, reason), n in list(self.compliance.items()):
            decisions.add_metric([cls, action, reason], float(n))
        routes = CounterMetricFamily(
            "gatehouse_virtual_route",
            "Requests to a virtual model, by the model it picked and the signal that decided (rule, semantic, "
            "classifier, default, cheapest, best).", labels=["router", "route", "signal"])
        for labels, n in list(self.virtual.items()):
            routes.add_metric(list(labels), float(n))
        yield decisions
        yield routes


def register(registry: CollectorRegistry) -> PolicyRouteCounts:
    counts = PolicyRouteCounts()
    registry.register(counts)  # a collector: describe() and collect()
    return counts
