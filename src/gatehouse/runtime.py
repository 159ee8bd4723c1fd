"""Compile a validated Config into a Runtime: providers, models, stores, auth and pipeline.

Everything per-request code needs hangs off the Runtime; there is no module-level mutable
state. Hot reload = build a new Runtime and swap it in.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from gatehouse.config import Config, DeploymentConfig, OpenAIConfig
from gatehouse.gateway.attempts import Attempts
from gatehouse.metering.meter import Meter
from gatehouse.metering.pricing import PriceBook
from gatehouse.observability.safe import describe
from gatehouse.observability.worker_metrics import WorkerMetrics
from gatehouse.policy.auth import AuthChain, Authenticator
from gatehouse.policy.cache import CacheStep, build_step as build_cache
from gatehouse.policy.compliance import Compliance, build_compliance, reclass
from gatehouse.policy.directory import AccessControl
from gatehouse.policy.guardrail_events import GuardrailEvents
from gatehouse.policy.guardrails.build import build_step as build_guardrails
from gatehouse.policy.key_auth import KeyAuth
from gatehouse.policy.keys import KeyHasher, new_secret, sha256_hex
from gatehouse.policy.limits import LimitsStep
from gatehouse.policy.pipeline import Pipeline, Step
from gatehouse.policy.principal import Principal
from gatehouse.policy.ui_session import UiSessions
from gatehouse.providers.base import Passthrough, Provider
from gatehouse.providers.registry import PROVIDERS
from gatehouse.routing.health import Breaker, Health, HealthHook
from gatehouse.routing.policy_routes import follow_groups, group_defaults
from gatehouse.routing.route import build_routes, uses_load
from gatehouse.routing.router import Router
from gatehouse.routing.strategies import LoadHook, Ordered
from gatehouse.routing.table import Deployment, ModelEntry, ModelTable
from gatehouse.routing.virtual import VirtualModel, build_virtual
from gatehouse.store.directory_sql import DirectoryStore
from gatehouse.store.limiter_shared import SharedLimiter
from gatehouse.store.migrate import require_current, upgrade
from gatehouse.store.responses_sql import ResponseStore
from gatehouse.store.sql import SqlStore, get_or_create_setting
from gatehouse.supervisor import worker_count, worker_index
from gatehouse.upstream.client import HttpPool
from gatehouse.wire.model_swap import for_deployment as model_swap_for

if TYPE_CHECKING:
    from gatehouse.policy.jwt_auth import BearerJwt
    from gatehouse.reload import ConfigReloader

log = logging.getLogger("gatehouse")


RESPONSES_DIALECT = frozenset({"openai-responses"})


def _passthrough_dialect(provider: Provider) -> str:
    return provider.dialect if isinstance(provider, Passthrough) else ""


def data_dir_from_env() -> Path:
    return Path(os.environ.get("GATEHOUSE_HOME") or ".gatehouse").resolve()


def store_url(cfg: Config, data_dir: Path) -> str:
    return cfg.store.url or f"sqlite:///{data_dir / 'gatehouse.db'}"


@dataclass
class Runtime:
    cfg: Config
    data_dir: Path
    store: SqlStore
    http: HttpPool
    providers: dict[str, Provider]
    models: dict[str, ModelEntry]
    auth: AuthChain  # credential -> Principal: [BearerJwt (auth.jwt), KeyAuth]
    hasher: KeyHasher
    pipeline: Pipeline
    admin_key: str | None
    meter: Meter  # ledger, usage headers, metrics, access log
    access: AccessControl  # groups and consumers (config + store), hot-reloaded
    limiter: SharedLimiter  # limits store; .stats are exported as metrics
    keys: KeyAuth  # the chain's API keys (forget() after a key changes)
    jwt: BearerJwt | None  # auth.jwt's verifier (also the admin UI's ID-token sign-in)
    draining: bool = False
    ready: bool = False
    pipeline_needs_body: bool = False  # a step rewrites bodies: no same-dialect fast path
    ui: UiSessions | None = None  # admin UI sessions; None when the UI is off (or no admin key)
    responses: ResponseStore | None = None  # stored Responses API responses (set by build)
    cache: CacheStep | None = None  # the response cache, when a model or group has `cache:` (docs/cache.md)
    guardrail_events: GuardrailEvents | None = None  # guardrail matches, written to the audit log in batches
    _models_json: dict[frozenset[str] | None, bytes] = field(default_factory=dict)
    health: Health = field(default_factory=Health)  # circuit breakers of the deployments
    # Which config this is (gatehouse_config_generation, /readyz) and the file's sha256.
    generation: int = 1
    config_sha256: str = ""
    # Requests that started on this runtime and have not finished (app.py): a reloaded-away
    # runtime is closed once this reaches 0.
    inflight: int = 0
    # The runtime a reload replaced this one with: what it took over is not closed here.
    successor: Runtime | None = None
    secret: str = field(default="", repr=False)  # the key HMAC secret (UI sessions sign with it too)
    reloader: ConfigReloader | None = None  # set by app.py when the config came from a file
    # `serve --workers N`: this worker's metrics socket and the merged /metrics (handed over on reload)
    worker_metrics: WorkerMetrics | None = None
    # The routing table (models, aliases, access) and the attempts loop (router plan + hooks).
    table: ModelTable = field(default_factory=lambda: ModelTable({}, {}))
    attempts: Attempts = field(default_factory=lambda: Attempts(Router(), ()))
    compliance: Compliance | None = None  # compliance routing (policy/compliance.py); None: not configured
    virtual: dict[str, VirtualModel] = field(default_factory=dict)  # virtual models (routing/virtual.py)

    # ---- building ---------------------------------------------------------------------------

    @classmethod
    async def build(cls, cfg: Config, data_dir: Path | None = None, previous: Runtime | None = None) -> Runtime:
        """previous: the live runtime a reload replaces. Its store, key hasher, ledger journal
        and writer (and its limiter when `limits` is unchanged) are taken over, not reopened;
        the restart-only settings (gatehouse/reload.py) must be equal."""
        data_dir = previous.data_dir if previous is not None else data_dir or data_dir_from_env()
        if previous is not None:
            store, hasher, secret = previous.store, previous.hasher, previous.secret
        else:
            store = SqlStore(store_url(cfg, data_dir), pool_size=cfg.store.pool_size)
            if cfg.store.migrate_on_start:
                await upgrade(store)
            else:
                await require_current(store)
            secret = cfg.server.secret or os.environ.get("GATEHOUSE_SECRET") or \
                await get_or_create_setting(store, "key_hmac_secret", new_secret)
            hasher = KeyHasher(secret)
        http = HttpPool()
        providers = {name: PROVIDERS[p.type](name, p, http) for name, p in cfg.providers.items()}
        health = Health()

        def breaker(d: DeploymentConfig) -> Breaker:
            p = cfg.providers[d.provider]
            return health.breaker(d.provider, d.model, p.failure_threshold, p.ejection_seconds,
                                  p.max_ejection_seconds)

        models = {
            m.name: ModelEntry(
                m.name,
                tuple(Deployment(d.provider, providers[d.provider], d.model, d.weight,
                                 _passthrough_dialect(providers[d.provider]), model_swap_for(m.name, d.model),
                                 breaker(d),
                                 RESPONSES_DIALECT if isinstance(pc := cfg.providers[d.provider], OpenAIConfig)
                                 and pc.responses_api else frozenset())
                      for d in m.deployments),
                m.private,
                context_window=m.context_window,
            )
            for m in cfg.models
        }
        models = build_routes(cfg, models, health, http)  # strategies, tiers, fallbacks (docs/routing.md)
        directory = AccessControl(cfg, [*models, *cfg.routers], DirectoryStore(store))
        await directory.reload()
        config_keys: dict[str, str] = {}
        config_sha: dict[str, str] = {}
        for cname, c in cfg.consumers.items():
            for k in c.keys:
                if k.startswith("sha256:"):
                    config_sha[k[7:]] = cname
                else:
                    config_keys[hasher.hash(k)] = cname
        keys = KeyAuth(hasher, store, config_keys, config_sha, directory.principal)
        directory.on_change.append(keys.forget)
        jwt: BearerJwt | None = None
        if cfg.auth.jwt is not None:
            from gatehouse.policy.jwt_auth import BearerJwt  # pyjwt/cryptography only when used

            jwt = BearerJwt(cfg.auth.jwt, http, directory)
        chain: list[Authenticator] = [keys] if jwt is None else [jwt, keys]  # keys last: they claim everything
        auth = AuthChain(chain)
        keep_limiter = previous is not None and previous.cfg.limits == cfg.limits
        limiter = previous.limiter if previous is not None and keep_limiter else \
            SharedLimiter(cfg.limits, cfg.store.redis_url or None, worker_count())
        meter = Meter(cfg, models, store, data_dir, previous.meter if previous is not None else None)
        meter.metrics.track_limits(limiter.stats)
        steps: list[Step] = [LimitsStep(limiter, PriceBook(cfg), cfg.limits, meter.tracing)]
        guardrails = build_guardrails(cfg, directory, meter.metrics, models, meter.tracing)
        events: GuardrailEvents | None = None
        if guardrails is not None:  # before limits: a blocked prompt reserves nothing
            steps.insert(0, guardrails)
            events = GuardrailEvents(store)  # matches go to the audit log, off the request path
            guardrails.on_verdicts = events.wrap(guardrails.on_verdicts)
        cache = build_cache(cfg, meter.metrics, models)
        if cache is not None:  # after limits: a hit is a request (and its tokens count), at no cost
            steps.append(cache)
        # The steps' declared order: guardrails, limits, then metering, whatever else is in
        # `steps`: it admits only what every other step admitted, and its attempts end before
        # any settle (gateway/handle.py), so budgets settle with the request's cost in ex.cost_usd.
        rt = cls(cfg, data_dir, store, http, providers, models, auth, hasher, Pipeline([*steps, meter.step]),
                 cfg.admin.key or None, meter, directory, limiter, keys, jwt)
        rt.health = health
        rt.cache = cache
        rt.guardrail_events = events
        rt.table = ModelTable(models, cfg.model_aliases, group_defaults(cfg),
                              {n: ModelEntry(n, ()) for n in cfg.routers})
        route_counts = meter.metrics.track_policy_routes() if cfg.compliance is not None or cfg.routers else None
        rt.compliance = build_compliance(cfg, models, route_counts)
        rt.virtual = build_virtual(cfg, route_counts)
        follow_groups(rt.table, rt.compliance, directory)  # store groups' default_model and data_class
        if guardrails is not None and rt.compliance is not None:  # a reroute check raises the data class
            guardrails.escalate = partial(reclass, rt)
        # Per attempt, in this order: the ledger record (metering), the deployment's breaker.
        # Then the deployments' load, where a strategy reads it (routing/strategies.py).
        rt.attempts = Attempts(Router(Ordered()), (meter.hook, HealthHook(), *([LoadHook()] if uses_load(cfg) else [])))
        rt.secret = secret
        if previous is None:  # a reloaded runtime re-binds the shared metrics in activate()
            meter.metrics.track_upstreams({name: p.connections for name, p in providers.items()}, health)
            meter.metrics.track_routing(models)
        rt.responses = ResponseStore(store, cfg.responses.store_ttl_seconds)
        await meter.start()
        if previous is not None:
            rt.worker_metrics = previous.worker_metrics
        elif worker_count() > 1:
            rt.worker_metrics = WorkerMetrics(meter.metrics, data_dir / "run", worker_index(), worker_count())
            await rt.worker_metrics.start()
        directory.start()
        if not keep_limiter:
            limiter.start()
        if health.scraper is not None:
            health.scraper.start()  # load-aware routing's engine metrics, off the request path
        if health.active is not None:
            health.active.start()  # providers' active health checks
        try:
            for p in providers.values():
                await p.start()
        except Exception:
            if previous is not None:  # a refused reload: stop what was started, hand back what was taken
                rt.successor = previous
                await rt.close()
            raise
        if cfg.ui.enabled and cfg.admin.key:
            rt.ui = UiSessions(secret, cfg.ui.session_minutes * 60.0, cfg.ui.login_attempts_per_minute)
        rt.pipeline_needs_body = any(getattr(s, "needs_body", False) for s in steps)
        if cache is not None:  # repeated requests by their bytes, where nothing but the body decides (cache_memo.py)
            cache.memos.enabled = guardrails is None and rt.compliance is None and not rt.pipeline_needs_body
        rt.ready = True
        return rt

    def activate(self) -> None:
        """This runtime is now the live one: the metrics describe its config (the series a
        reload hands over keep counting; the upstream gauges follow its providers)."""
        m = self.meter.metrics
        if not self.meter.owns_ledger:
            m.reconfigure(self.models, self.cfg.groups, self.cfg.providers)
            m.track_upstreams({name: p.connections for name, p in self.providers.items()}, self.health)
            m.track_routing(self.models)
        m.config_loaded(self.generation, self.config_sha256)

    async def close(self) -> None:
        heir = self.successor  # set by a reload: it runs on with what it took over
        self.ready = False
        await self.access.close()
        if self.health.scraper is not None:
            await self.health.scraper.stop()
        if self.health.active is not None:
            await self.health.active.stop()
        if heir is None or heir.limiter is not self.limiter:
            await self.limiter.close()
        if self.worker_metrics is not None and (heir is None or heir.worker_metrics is not self.worker_metrics):
            await self.worker_metrics.close()
        if self.cache is not None:
            await self.cache.close()
        for p in self.providers.values():
            try:
                await p.close()
            except Exception as e:
                log.error("closing provider %s: %s", p.name, describe(e))
        await self.http.close()
        # drains the journal into the store: before store.close
        await self.meter.close(keep_ledger=heir is not None and heir.meter.writer is self.meter.writer)
        if self.guardrail_events is not None:
            await self.guardrail_events.close()
        if self.responses is not None:
            await self.responses.flush()  # stored responses still being written
        if heir is None or heir.store is not self.store:
            await self.store.close()

    # ---- per request --------------------------------------------------------------------------

    def resolve(self, name: str, principal: Principal) -> ModelEntry:
        return self.table.resolve(name, principal)

    def visible_models(self, principal: Principal) -> list[ModelEntry]:
        return self.table.visible(principal)


def key_fingerprint(key: str) -> str:
    """What `gatehouse keys hash` prints for config files: sha256:<hex>."""
    return "sha256:" + sha256_hex(key)
