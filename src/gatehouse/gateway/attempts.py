"""Attempts: the failover loop over the router's plan, with a hook at each step of an attempt.

The router (routing/router.py) decides which deployments a request tries and in which order; this
loop tries them in turn, failing over on a retryable upstream error (connect errors, timeouts,
5xx) until the first byte of an answer, and never after. Everything that happens per attempt is an
`AttemptHook`, called in order: metering (metering/meter.py: a ledger record per attempt), health
(routing/health.py: the deployment's circuit breaker); tracing spans and retry budgets plug in the
same way.

An attempt is `started`, then either `ended` with its error (it failed before answering), or
`answered` at the first byte and `ended` without an error once the answer is out: just before a
unary answer is sent (gateway/relay.py), after the last byte of a stream, or when the request ends
any other way (gateway/handle.py; the exchange's status then says how).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from gatehouse.errors import GatehouseError, UpstreamContextLength
from gatehouse.providers.base import CallContext
from gatehouse.routing.health import is_retryable
from gatehouse.routing.reasons import failover_reason
from gatehouse.routing.route import replan_reason

if TYPE_CHECKING:
    from gatehouse.gateway.endpoint import Call, Endpoint
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.gateway.relay import Reply
    from gatehouse.routing.router import Router
    from gatehouse.routing.table import Deployment

log = logging.getLogger("gatehouse.attempts")


class AttemptHook(Protocol):
    def started(self, ex: Exchange, dep: Deployment) -> None:
        """Before the upstream call."""

    def answered(self, ex: Exchange, dep: Deployment) -> None:
        """The deployment answered (first byte): no failover from here on."""

    def ended(self, ex: Exchange, dep: Deployment, error: GatehouseError | None) -> None:
        """The attempt is over: failed with `error`, or (None) its answer was relayed."""


class Attempts:
    def __init__(self, router: Router, hooks: Sequence[AttemptHook]):
        self.router = router
        self.hooks = tuple(hooks)

    async def run(self, ex: Exchange, ep: Endpoint, call: Call) -> Reply:
        """The first answer from the plan's deployments; raises the last retryable error when
        every one failed, or the first error that another deployment would not fix. When the
        router has a way on (a cold-start hold, a retry, the fallbacks), it plans again after it."""
        entry = ex.entry
        assert entry is not None
        hooks = self.hooks
        last: GatehouseError | None = None
        state = ex.routing
        if state is not None:  # planning again: after a hold, a retry's backoff, for the fallbacks
            ex.route_reason = replan_reason(state.stage)
        for dep in self.router.plan(entry, ex):
            for hook in hooks:
                hook.started(ex, dep)
            ex.attempt = dep
            ex.deployment, ex.provider = dep.upstream_model, dep.provider_name
            ctx = CallContext(ex.request_id, dep.model_name or entry.name, dep.upstream_model, call.forward_headers,
                              dep.model_swap,
                              ex.stream, ex.traceparent)
            try:
                reply = await ep.invoke(dep, call, ctx)
            except GatehouseError as err:
                ex.attempt = None
                for hook in hooks:
                    hook.ended(ex, dep, err)
                if not is_retryable(err):
                    if isinstance(err, UpstreamContextLength) and self.router.overflow(ex, dep):
                        return await self.run(ex, ep, call)  # a context_window_fallback (routing/route.py)
                    raise
                if dep is not entry.deployments[-1]:
                    log.warning("deployment %s/%s failed (%s); trying the next", dep.provider_name,
                                dep.upstream_model, err.code)
                last = err
                ex.route_reason = failover_reason(err)
                continue
            for hook in hooks:
                hook.answered(ex, dep)
            return reply
        failure = last or self.router.unavailable(entry)
        wait = self.router.recover(ex, failure)  # a cold-start hold, a retry's backoff (routing/route.py)
        if wait is None:
            raise failure
        await wait
        return await self.run(ex, ep, call)

    def end(self, ex: Exchange) -> None:
        """End the attempt in progress, if any (its answer was relayed, or the request ended)."""
        dep = ex.attempt
        if dep is not None:
            ex.attempt = None
            for hook in self.hooks:
                hook.ended(ex, dep, None)
