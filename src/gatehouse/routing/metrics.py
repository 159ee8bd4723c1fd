"""Routing's Prometheus series, read from the live routing table at scrape time (nothing is
counted on the request path for them): per deployment its load and cool-down state, per model
its fallbacks taken and its cold-start queue. One collector per process; a reload points it at
the new runtime's models (observability/metrics.py `track_routing`).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from gatehouse.routing.table import ModelEntry


class RoutingCollector:
    def __init__(self) -> None:
        self.models: dict[str, ModelEntry] = {}

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # unchecked registration: the series depend on the config

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        dep_labels = ["model", "provider", "deployment"]
        in_flight = GaugeMetricFamily("gatehouse_deployment_in_flight",
                                      "Requests this process has on the deployment (least-busy, latency, "
                                      "max_in_flight models).", labels=dep_labels)
        latency = GaugeMetricFamily("gatehouse_deployment_latency_ewma_seconds",
                                    "Peak-EWMA of the deployment's time to first byte.", labels=dep_labels)
        cooling = GaugeMetricFamily("gatehouse_deployment_cooling",
                                    "1 while the deployment cools down after an upstream 429.", labels=dep_labels)
        ejections = CounterMetricFamily("gatehouse_deployment_ejections",
                                        "Times the deployment's breaker ejected it.", labels=dep_labels)
        fallbacks = CounterMetricFamily("gatehouse_route_fallbacks", "Requests served (or tried) by a fallback "
                                        "model, by reason.", labels=["model", "fallback", "reason"])
        waiting = GaugeMetricFamily("gatehouse_cold_start_waiting", "Requests held while the model starts.",
                                    labels=["model"])
        starts = CounterMetricFamily("gatehouse_cold_starts", "Cold starts (hold episodes) of the model.",
                                     labels=["model"])
        held = CounterMetricFamily("gatehouse_cold_start_held", "Requests held for a cold start.", labels=["model"])
        timeouts = CounterMetricFamily("gatehouse_cold_start_timeouts", "Held requests that timed out.",
                                       labels=["model"])
        waited = CounterMetricFamily("gatehouse_cold_start_wait_seconds", "Seconds held requests waited, in all.",
                                     labels=["model"])
        for entry in self.models.values():
            for dep in entry.deployments:
                labels = [entry.name, dep.provider_name, dep.upstream_model]
                b = dep.breaker
                cooling.add_metric(labels, 1.0 if b.cooling and not b.is_available() else 0.0)
                ejections.add_metric(labels, float(b.ejected_total))
                load = dep.load
                if load is not None:
                    in_flight.add_metric(labels, float(load.in_flight))
                    latency.add_metric(labels, load.ewma)
            route = entry.route
            if route is None:
                continue
            for (name, reason), n in route.fallback_counts.items():
                fallbacks.add_metric([entry.name, name, reason], float(n))
            cold = route.cold_start
            if cold is not None:
                waiting.add_metric([entry.name], float(cold.waiting))
                starts.add_metric([entry.name], float(cold.cold_starts))
                held.add_metric([entry.name], float(cold.held))
                timeouts.add_metric([entry.name], float(cold.timeouts))
                waited.add_metric([entry.name], cold.wait_seconds_total)
        yield from (in_flight, latency, cooling, ejections, fallbacks, waiting, starts, held, timeouts, waited)
