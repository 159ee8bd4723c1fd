"""A model's compiled routing: strategy per priority tier, fallbacks, the retry budget, cold start.

Built once at load (`build_routes`, called by runtime.py) for the models whose config asks for more
than the configured order (`routing`, `priority`, `max_in_flight`, `fallbacks`,
`context_window_fallbacks`, `cold_start`); every other model keeps `route = None` and the Router's
plain loop. `Route.plan(entry, ex)` is lazy like the plain one: each next deployment is worked out
only when the attempt before it failed (gateway/attempts.py), so a breaker's probe, a fallback's
access check or a failover's sort happen only when needed. docs/routing.md has the user's view.
"""
from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from gatehouse.errors import GatehouseError, UpstreamError
from gatehouse.routing import reasons
from gatehouse.routing.health import is_retryable
from gatehouse.routing.reasons import CONTEXT_WINDOW, CONTEXT_WINDOW_FALLBACK, FALLBACK
from gatehouse.routing.strategies import (
    LOAD_AWARE,
    STRATEGIES,
    LoadAware,
    Ordered,
    Strategy,
    model_strategy,
    self_hosted_pool,
)

if TYPE_CHECKING:
    from gatehouse.config import Config, DeploymentConfig, ModelConfig
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.routing.coldstart import ColdStart
    from gatehouse.routing.health import Health
    from gatehouse.routing.lora import LoraState
    from gatehouse.routing.table import Deployment, ModelEntry
    from gatehouse.upstream.client import HttpPool

ROUTE_HEADER = "x-gatehouse-route"
# Where a request is after a failed plan (Exchange.routing, a RouteState; None: the first plan).
# A model with a cold-start hold or retries defers its fallbacks until those are spent.
FIRST = "first"
AFTER_HOLD = "after_hold"
RETRY = "retry"
FALLBACKS_ONLY = "fallbacks_only"
CONTEXT_FALLBACK = "context_fallback"  # an upstream's context-length error moved it to a context_window_fallback
BACKOFF_CAP = 5.0  # seconds, the longest wait before a retry
# The route reason (routing/reasons.py) of the first attempt of a plan made at each stage.
_REPLAN = {AFTER_HOLD: reasons.COLD_START, RETRY: reasons.RETRY, FALLBACKS_ONLY: FALLBACK,
           CONTEXT_FALLBACK: CONTEXT_WINDOW_FALLBACK}


def replan_reason(stage: str) -> str:
    """The reason of the first attempt of a new plan, by the request's recovery stage."""
    return _REPLAN.get(stage, reasons.PRIMARY)


class RouteState:
    """One request's recovery so far: made only once a plan has failed."""

    __slots__ = ("overflowed", "retries", "stage", "target")

    def __init__(self) -> None:
        self.stage = FIRST
        self.retries = 0
        self.target: ModelEntry | None = None  # the context_window_fallback serving it instead
        self.overflowed: tuple[str, ...] = ()  # models whose upstream said the prompt does not fit


class EjectionCap:
    """`routing.max_ejected_percent`: at most this share of a model's deployments ejected at once
    (one always may be), so a fault on our side cannot empty a whole pool."""

    __slots__ = ("deployments", "percent")

    def __init__(self, percent: int) -> None:
        self.percent = percent
        self.deployments: tuple[Deployment, ...] = ()

    def may_eject(self, dep: Deployment) -> bool:
        now = time.monotonic()
        ejected = sum(1 for d in self.deployments if d is not dep and not d.breaker.is_available(now))
        return ejected + 1 <= max(1, len(self.deployments) * self.percent // 100)


class Route:
    __slots__ = ("backoff", "cold_start", "context_fallbacks", "deadline", "defers_fallbacks", "direct",
                 "fallback_counts", "fallbacks", "max_attempts", "retries", "strategy", "tiers")

    def __init__(self, strategy: str, tiers: tuple[tuple[Strategy, tuple[Deployment, ...]], ...],
                 max_attempts: int | None, deadline: float | None, cold_start: ColdStart | None,
                 retries: int = 0, backoff: float = 0.25) -> None:
        self.strategy = strategy  # its name, for reports
        self.tiers = tiers
        self.max_attempts = max_attempts or 1 << 30
        self.deadline = deadline
        self.cold_start = cold_start
        self.retries = retries
        self.backoff = backoff
        self.defers_fallbacks = cold_start is not None or retries > 0
        self.fallbacks: tuple[ModelEntry, ...] = ()  # linked once every entry exists
        self.context_fallbacks: tuple[ModelEntry, ...] = ()
        self.fallback_counts: dict[tuple[str, str], int] = {}  # (fallback, reason) -> requests (metrics)
        self.direct = False  # set by `link`: a first plan is just the model's own deployments

    def link(self, fallbacks: tuple[ModelEntry, ...], context_fallbacks: tuple[ModelEntry, ...]) -> None:
        """The fallback entries, once every entry exists. A route with neither, no attempt budget
        and no deadline plans its first time as `deployments_of` alone (Router.plan then skips
        this generator: one less per request)."""
        self.fallbacks, self.context_fallbacks = fallbacks, context_fallbacks
        self.direct = not fallbacks and not context_fallbacks and self.deadline is None \
            and self.max_attempts == 1 << 30

    def plan(self, entry: ModelEntry, ex: Exchange) -> Iterator[Deployment]:
        """The deployments to try in turn: the entry's (or a context-window fallback's, when the
        prompt does not fit), then the error fallbacks', within the attempt budget and deadline."""
        deadline = ex.started + self.deadline if self.deadline is not None else math.inf
        budget = self.max_attempts
        state = ex.routing
        served = entry if state is None or state.target is None else state.target
        window = entry.context_window
        if served is entry and self.context_fallbacks and window is not None and ex.prompt_estimate > window:
            fit = next((fb for fb in self.context_fallbacks if _fits(fb, ex) and _may_use(ex, entry, fb)), None)
            if fit is not None:
                served = fit
                ex.response_headers[ROUTE_HEADER] = f"model={fit.name}; reason=context_window"
                ex.route_reason = CONTEXT_WINDOW
                self._count(fit.name, "context_window")
        n = 0
        if state is None or state.stage != FALLBACKS_ONLY:
            for dep in deployments_of(served, ex):
                if n and time.monotonic() >= deadline:
                    return
                yield dep
                n += 1
                if n >= budget:
                    return
            if self.defers_fallbacks:
                return  # a hold or a retry first: `recover` moves on to the fallbacks
        for fb in self.fallbacks:
            if fb is served or not _fits(fb, ex) or not _may_use(ex, entry, fb):
                continue
            first = True
            for dep in deployments_of(fb, ex):
                if n and time.monotonic() >= deadline:
                    return
                if first:
                    first = False
                    ex.response_headers[ROUTE_HEADER] = f"model={fb.name}; reason=fallback"
                    ex.route_reason = FALLBACK
                    self._count(fb.name, "fallback")
                yield dep
                n += 1
                if n >= budget:
                    return

    def recover(self, ex: Exchange, err: GatehouseError) -> Awaitable[None] | None:
        """After a failed plan, what to await before planning once more (None: fail with `err`):
        the cold-start hold when every deployment is cold (once); a jittered, growing backoff
        before a retry (`routing.retries`, within the deadline; not after a 429); then, once
        those are spent, nothing before the fallbacks."""
        state = ex.routing
        if state is None:
            state = ex.routing = RouteState()
        if state.stage == FALLBACKS_ONLY:
            return None
        cold = self.cold_start
        if state.stage == FIRST and cold is not None and isinstance(err, UpstreamError) and cold.is_cold(err):
            return _held(cold, ex, state, bool(self.fallbacks))
        if state.retries < self.retries and is_retryable(err) and err.status != 429:
            delay = min(BACKOFF_CAP, self.backoff * 2 ** state.retries) * (0.5 + random.random() / 2)
            if self.deadline is None or time.monotonic() + delay < ex.started + self.deadline:
                state.retries += 1
                state.stage = RETRY
                return asyncio.sleep(delay)
        if self.defers_fallbacks and self.fallbacks:
            state.stage = FALLBACKS_ONLY
            return _nothing()
        return None

    def overflow(self, entry: ModelEntry, ex: Exchange, failed: str) -> bool:
        """The upstream of model `failed` answered with its context-length error: whether a
        `context_window_fallbacks` model (one not tried yet, that the caller may use and whose
        window fits the estimate) takes the request on the next plan."""
        if not self.context_fallbacks:
            return False
        state = ex.routing
        if state is None:
            state = ex.routing = RouteState()
        tried = state.overflowed = (*state.overflowed, failed)
        fit = next((fb for fb in self.context_fallbacks
                    if fb.name not in tried and _fits(fb, ex) and _may_use(ex, entry, fb)), None)
        if fit is None:
            return False
        state.target, state.stage = fit, CONTEXT_FALLBACK
        ex.response_headers[ROUTE_HEADER] = f"model={fit.name}; reason={CONTEXT_WINDOW_FALLBACK}"
        self._count(fit.name, CONTEXT_WINDOW_FALLBACK)
        return True

    def _count(self, name: str, reason: str) -> None:
        key = (name, reason)
        self.fallback_counts[key] = self.fallback_counts.get(key, 0) + 1


async def _held(cold: ColdStart, ex: Exchange, state: RouteState, has_fallbacks: bool) -> None:
    ready = await cold.hold(ex, raise_on_timeout=not has_fallbacks)
    state.stage = AFTER_HOLD if ready else FALLBACKS_ONLY


async def _nothing() -> None:
    return None


def deployments_of(entry: ModelEntry, ex: Exchange) -> Iterator[Deployment]:
    """One model's own deployments: tier by tier in its strategy's order, skipping ejected ones;
    those at their `max_in_flight` go last, after every tier (busy beats failing)."""
    route = entry.route
    keep = ex.deployment_filter  # compliance routing: the deployments that may receive the data class
    if route is None:
        for dep in entry.deployments:
            if (keep is None or id(dep) in keep) and dep.breaker.allow():
                yield dep
        return
    saturated: list[Deployment] | None = None
    for strategy, deps in route.tiers:
        for dep in strategy.order(deps, ex):
            if keep is not None and id(dep) not in keep:
                continue
            cap, load = dep.max_in_flight, dep.load
            if load is not None and (load.saturated or (cap is not None and load.in_flight >= cap)):
                if saturated is None:
                    saturated = []
                saturated.append(dep)
                continue
            if dep.breaker.allow():
                yield dep
    if saturated:
        for dep in saturated:
            if dep.breaker.allow():
                yield dep


def _fits(entry: ModelEntry, ex: Exchange) -> bool:
    return entry.context_window is None or ex.prompt_estimate <= entry.context_window


def _may_use(ex: Exchange, asked: ModelEntry, fb: ModelEntry) -> bool:
    """A fallback is checked against the caller's access as if asked for by name, a prompt
    a guardrail found sensitive never leaves private models for a public one, and one of a data
    class goes only to a fallback with a deployment that may receive it."""
    p = ex.principal
    if p is not None and p.allowed is not None and fb.name not in p.allowed:
        return False
    keep = ex.deployment_filter  # compliance routing: a fallback without a deployment for the data class
    if keep is not None and not any(id(d) in keep for d in fb.deployments):
        return False
    return not (ex.sensitive and asked.private and not fb.private)


# ---- built at load ------------------------------------------------------------------------------


def needs_route(cfg: Config, m: ModelConfig) -> bool:
    return bool(m.routing or m.fallbacks or m.context_window_fallbacks or m.cold_start or m.adapter
                or any(d.priority != 1 or d.max_in_flight is not None for d in m.deployments)
                or self_hosted_pool(cfg, m))


def build_routes(cfg: Config, models: dict[str, ModelEntry], health: Health, http: HttpPool) -> dict[str, ModelEntry]:
    """The entries again, with their deployments' routing fields and, where configured, a Route."""
    from gatehouse.routing.coldstart import ColdStart  # aiohttp-using module: only when configured

    out: dict[str, ModelEntry] = {}
    for m in cfg.models:
        entry = models[m.name]
        several = len(m.deployments) > 1 or bool(m.fallbacks)
        if not needs_route(cfg, m):
            deps = tuple(replace(d, model_name=m.name, cools_down=several) for d in entry.deployments)
            out[m.name] = replace(entry, deployments=deps)
            continue
        rc = m.routing
        strategy = model_strategy(cfg, m)
        cap = EjectionCap(rc.max_ejected_percent) if rc is not None and rc.max_ejected_percent < 100 else None
        deps = tuple(
            replace(d, model_name=m.name, priority=dc.priority, max_in_flight=dc.max_in_flight,
                    load=health.load(dc.provider, dc.model)
                    if strategy in LOAD_AWARE or dc.max_in_flight is not None else None,
                    ejection_cap=cap, cools_down=several,
                    lora=_lora(cfg, dc, health, http) if m.adapter is not None else None)
            for d, dc in zip(entry.deployments, m.deployments))
        if cap is not None:
            cap.deployments = deps
        if strategy == "load-aware":
            _scrape(cfg, m, deps, health, http)
        tiers = tuple((_strategy(strategy, tier, m), tier)
                      for tier in (tuple(d for d in deps if d.priority == p)
                                   for p in sorted({d.priority for d in deps})))
        cold = None
        if m.cold_start is not None:
            urls = tuple(readiness_url(cfg, dc.provider) if dc.scale_to_zero else
                         _ready_url(cfg, dc.provider, m.cold_start.ready_path) for dc in m.deployments)
            strict = tuple(dc.scale_to_zero for dc in m.deployments)
            cold = ColdStart(m.name, deps, urls, m.cold_start, http, strict)
            _readiness(m, deps, urls, health, http)
        route = Route(strategy, tiers, rc.max_attempts if rc else None, rc.deadline_seconds if rc else None, cold,
                      rc.retries if rc else 0, rc.retry_backoff_seconds if rc else 0.25)
        out[m.name] = replace(entry, deployments=deps, route=route)
    _active_checks(cfg, health, http)
    for m in cfg.models:
        linked = out[m.name].route
        if linked is not None:
            linked.link(tuple(out[n] for n in m.fallbacks), tuple(out[n] for n in m.context_window_fallbacks))
    return out


def _strategy(name: str, tier: tuple[Deployment, ...], m: ModelConfig) -> Strategy:
    """A tier's strategy; an adapter model's puts the deployments with the adapter loaded first."""
    if len(tier) == 1:
        return Ordered()
    strategy: Strategy = STRATEGIES[name](tier)
    if isinstance(strategy, LoadAware) and m.routing is not None and m.routing.prefix_weight is not None:
        strategy.prefix_weight = m.routing.prefix_weight
    if m.adapter is not None:
        from gatehouse.routing.lora import LoraFirst

        strategy = LoraFirst(strategy, m.adapter.name)
    return strategy


def _metrics_url(cfg: Config, dc: DeploymentConfig) -> str | None:
    """The deployment's engine metrics: its `metrics_url`, else its provider's base_url root + /metrics."""
    if dc.metrics_url is not None:
        return dc.metrics_url
    base = str(getattr(cfg.providers[dc.provider], "base_url", "") or "").rstrip("/")
    if not base:
        return None  # a managed provider
    return (base[:-3] if base.endswith("/v1") else base) + "/metrics"


def _lora(cfg: Config, dc: DeploymentConfig, health: Health, http: HttpPool) -> LoraState | None:
    """An adapter model's deployment: the loaded adapters of its engine, scraped (routing/lora.py)."""
    from gatehouse.routing.scrape import EngineScraper

    url = _metrics_url(cfg, dc)
    if url is None:
        return None
    if health.scraper is None:
        health.scraper = EngineScraper(http, 1.0)
    return health.scraper.lora(url)


def _scrape(cfg: Config, m: ModelConfig, deps: tuple[Deployment, ...], health: Health, http: HttpPool) -> None:
    """Each deployment's engine metrics URL onto the runtime's scraper (routing/scrape.py)."""
    from gatehouse.routing.scrape import EngineScraper

    rc = m.routing
    assert rc is not None
    interval = rc.scrape_interval_seconds or 1.0
    if health.scraper is None:
        health.scraper = EngineScraper(http, interval)
    for dep, dc in zip(deps, m.deployments):
        url = _metrics_url(cfg, dc)
        if url is None:
            continue  # a managed provider: scored on in-flight alone
        assert dep.load is not None
        dep.load.queue_threshold = float(rc.queue_threshold if rc.queue_threshold is not None else 16)
        health.scraper.add(url, dep.load, interval)


def _active_checks(cfg: Config, health: Health, http: HttpPool) -> None:
    """Each `health_check` provider's URL and the breakers of its deployments (routing/active.py)."""
    from gatehouse.routing.active import ActiveChecks

    for name, p in cfg.providers.items():
        hc = p.health_check
        if hc is None or not getattr(p, "base_url", ""):
            continue
        breakers = [b for (prov, _), b in health.breakers.items() if prov == name]
        if not breakers:
            continue
        base = str(getattr(p, "base_url", "")).rstrip("/")
        url = (base[:-3] if base.endswith("/v1") else base) + "/" + hc.path.lstrip("/")
        if health.active is None:
            health.active = ActiveChecks(http)
        health.active.add(url, hc.interval_seconds, breakers)


def _root_url(cfg: Config, provider: str, path: str) -> str | None:
    """The provider's base_url without its `/v1`, plus `path` (None: no base_url)."""
    base = str(getattr(cfg.providers[provider], "base_url", "") or "").rstrip("/")
    if not base:
        return None
    return (base[:-3] if base.endswith("/v1") else base) + "/" + path.lstrip("/")


def readiness_url(cfg: Config, provider: str) -> str | None:
    """A scale_to_zero deployment's readiness probe: the provider's health_check path, else
    `/health` (vLLM, SGLang, llama.cpp server, TGI), or `/` for Ollama (it has no /health)."""
    p = cfg.providers[provider]
    path = p.health_check.path if p.health_check is not None else "/" if p.type == "ollama" else "/health"
    return _root_url(cfg, provider, path)


def _readiness(m: ModelConfig, deps: tuple[Deployment, ...], urls: tuple[str | None, ...], health: Health,
               http: HttpPool) -> None:
    """Each scale_to_zero deployment's readiness poller (routing/active.py), off the request path."""
    from gatehouse.routing.active import ActiveChecks

    assert m.cold_start is not None
    for dep, dc, url in zip(deps, m.deployments, urls):
        if dc.scale_to_zero and url is not None:
            if health.active is None:
                health.active = ActiveChecks(http)
            health.active.add_readiness(url, m.cold_start.poll_interval_seconds, dep.breaker)


def _ready_url(cfg: Config, provider: str, path: str) -> str | None:
    base: str = getattr(cfg.providers[provider], "base_url", "")
    return base.rstrip("/") + "/" + path.lstrip("/") if base else None


def uses_load(cfg: Config) -> bool:
    """Whether any deployment keeps a Load (the runtime then adds routing's LoadHook)."""
    return any(model_strategy(cfg, m) in LOAD_AWARE
               or any(d.max_in_flight is not None for d in m.deployments) for m in cfg.models)
