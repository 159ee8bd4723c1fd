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

from gatehouse.errors import GatehouseError, UpstreamError, UpstreamUnavailable

from gatehouse.routing.route import AFTER_HOLD, FALLBACKS_ONLY
from gatehouse.routing.strategies import Ordered, Strategy

if TYPE_CHECKING:
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.routing.coldstart import ColdStart
    from gatehouse.routing.table import Deployment, ModelEntry


async def _held(cold: ColdStart, ex: Exchange, has_fallbacks: bool) -> None:
    ready = await cold.hold(ex, raise_on_timeout=not has_fallbacks)
    ex.routing = AFTER_HOLD if ready else FALLBACKS_ONLY


async def _nothing() -> None:
    return None


class Router:
    """The strategy's order, healthy deployments only."""

    __slots__ = ("strategy",)

    def __init__(self, strategy: Strategy | None = None):
        self.strategy: Strategy = strategy or Ordered()

    def plan(self, entry: ModelEntry, ex: Exchange) -> Iterator[Deployment]:
        route = entry.route
        if route is not None:
            yield from route.plan(entry, ex)
            return
        for dep in self.strategy.order(entry.deployments, ex):
            if dep.breaker.allow():
                yield dep

    def cold_wait(self, ex: Exchange, err: GatehouseError) -> Awaitable[None] | None:
        """What to await before planning once more, for a model with `cold_start` whose plan
        failed: the hold, when every deployment is cold (then the model's own deployments again,
        or, if the hold timed out, its fallbacks); nothing, when it has fallbacks still to try
        (they come after the hold, not before). None: fail with `err`."""
        entry = ex.entry
        route = entry.route if entry is not None else None
        cold = route.cold_start if route is not None else None
        if route is None or cold is None:
            return None
        if isinstance(err, UpstreamError) and cold.is_cold(err):
            return _held(cold, ex, bool(route.fallbacks))
        if not route.fallbacks:
            return None
        ex.routing = FALLBACKS_ONLY
        return _nothing()

    def unavailable(self, entry: ModelEntry) -> UpstreamUnavailable:
        """The plan was empty (every deployment ejected): fail fast, saying when one takes a probe."""
        wait = min(dep.breaker.retry_after() for dep in entry.deployments)
        return UpstreamUnavailable(f"Every upstream for model '{entry.name}' is failing; retry later.",
                                   headers={"retry-after": str(max(1, math.ceil(wait)))})
