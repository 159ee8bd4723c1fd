"""The router: which deployments of a model a request tries, in which order.

`Router.plan(entry, ex)` is the one seam for routing strategies (weighted, least-inflight,
latency) and compliance routing: gateway/attempts.py walks the plan, failing over on retryable
upstream errors, and calls the attempt hooks (metering, health, tracing) on each step. Today's
strategy is the configured order, skipping deployments whose circuit breaker does not allow an
attempt (routing/health.py). A model whose config asks for more (a strategy, priority tiers,
fallbacks, a retry budget, a cold-start hold) has a compiled `Route` (routing/route.py) that plans
instead; the plain loop stays as cheap as it was. The plan is lazy: a breaker is asked (and may
let its half-open probe through) only when the attempt before it failed.
"""
from __future__ import annotations

import math
from collections.abc import Awaitable, Iterator
from typing import TYPE_CHECKING

from gatehouse.errors import GatehouseError, UpstreamUnavailable
from gatehouse.routing.route import deployments_of
from gatehouse.routing.strategies import Ordered, Strategy

if TYPE_CHECKING:
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.routing.table import Deployment, ModelEntry


class Router:
    """The strategy's order, healthy deployments only."""

    __slots__ = ("strategy",)

    def __init__(self, strategy: Strategy | None = None):
        self.strategy: Strategy = strategy or Ordered()

    def plan(self, entry: ModelEntry, ex: Exchange) -> Iterator[Deployment]:
        route = entry.route
        if route is not None:
            if route.direct and ex.routing is None:
                return deployments_of(entry, ex)  # what route.plan would yield, without its generator
            return route.plan(entry, ex)  # its generator itself: no second one delegating to it
        return self._healthy(entry, ex)

    def _healthy(self, entry: ModelEntry, ex: Exchange) -> Iterator[Deployment]:
        keep = ex.deployment_filter  # compliance routing: the deployments that may receive the data class
        for dep in self.strategy.order(entry.deployments, ex):
            if (keep is None or id(dep) in keep) and dep.breaker.allow():
                yield dep

    def recover(self, ex: Exchange, err: GatehouseError) -> Awaitable[None] | None:
        """What to await before planning once more after a failed plan (a cold-start hold, a
        retry's backoff, nothing before the fallbacks: routing/route.py); None: fail with `err`."""
        entry = ex.entry
        route = entry.route if entry is not None else None
        return route.recover(ex, err) if route is not None else None

    def overflow(self, ex: Exchange, dep: Deployment) -> bool:
        """`dep`'s upstream said the prompt does not fit: whether the model's
        `context_window_fallbacks` take the request on the next plan (routing/route.py)."""
        entry = ex.entry
        if entry is None or entry.route is None:
            return False
        return entry.route.overflow(entry, ex, dep.model_name or entry.name)

    def unavailable(self, entry: ModelEntry) -> UpstreamUnavailable:
        """The plan was empty (every deployment ejected): fail fast, saying when one takes a probe."""
        wait = min(dep.breaker.retry_after() for dep in entry.deployments)
        return UpstreamUnavailable(f"Every upstream for model '{entry.name}' is failing; retry later.",
                                   headers={"retry-after": str(max(1, math.ceil(wait)))})
