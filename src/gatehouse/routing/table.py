"""The routing table: the configured models, their deployments, and the aliases that name them.

Built once per Runtime (runtime.py) and read on every request: `resolve(name, principal)` turns
the model a client asked for into its ModelEntry (exact names first, then `model_aliases`, the most
specific pattern winning), refusing models the principal may not use. Everything a request would
otherwise work out per deployment (which dialects it takes unchanged, its breaker, its model-name
swap) is decided here, at load.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import translate
from typing import TYPE_CHECKING

from gatehouse.errors import NotFound, PermissionDenied
from gatehouse.providers.base import Completer, Embedder, Passthrough, TokenCounter
from gatehouse.routing.health import Breaker
from gatehouse.routing.policy_routes import DEFAULT

if TYPE_CHECKING:
    from gatehouse.policy.principal import Principal
    from gatehouse.providers.base import Provider
    from gatehouse.routing.lora import LoraState
    from gatehouse.routing.route import EjectionCap, Route
    from gatehouse.routing.strategies import Load
    from gatehouse.wire.model_swap import ModelSwap


@dataclass(frozen=True)
class Deployment:
    provider_name: str
    provider: Provider
    upstream_model: str
    weight: int = 1
    # The wire dialect this deployment can take a client body in unchanged ("" = none);
    # decided once here because Protocol isinstance checks are slow on the hot path.
    passthrough_dialect: str = ""
    # Puts the public name back into replies relayed untranslated (None: the names match).
    model_swap: ModelSwap | None = None
    # Circuit breaker (routing/health.py), shared by every model using this provider + model.
    breaker: Breaker = field(default_factory=Breaker, compare=False)
    # More dialects it takes unchanged (openai-responses for `responses_api: true` providers).
    also_forwards: frozenset[str] = frozenset()
    # Every client dialect whose body this deployment takes unchanged (the two above).
    forwards: frozenset[str] = field(init=False, compare=False, default=frozenset())
    # Routing (docs/routing.md): the public name of the model it serves, its tier, its in-flight
    # cap, its load (least-busy / latency strategies only; else None: nothing to keep up to date),
    # the model's cap on ejections, and whether an upstream 429 cools it down (the model has
    # somewhere else to send the request).
    model_name: str = ""
    priority: int = 1
    max_in_flight: int | None = None
    load: Load | None = field(default=None, compare=False)
    ejection_cap: EjectionCap | None = field(default=None, compare=False)
    cools_down: bool = False
    # An adapter model's deployments: the adapters its engine reports loaded (routing/lora.py).
    lora: LoraState | None = field(default=None, compare=False)
    # The provider's optional abilities (providers/base.py), typed; None: it has not that ability.
    # Checked here once: a Protocol isinstance per request is slow.
    forwarder: Passthrough | None = field(init=False, compare=False, default=None)
    completer: Completer | None = field(init=False, compare=False, default=None)
    embedder: Embedder | None = field(init=False, compare=False, default=None)
    token_counter: TokenCounter | None = field(init=False, compare=False, default=None)

    def __post_init__(self) -> None:
        dialects = self.also_forwards | ({self.passthrough_dialect} if self.passthrough_dialect else set())
        object.__setattr__(self, "forwards", frozenset(dialects))
        p = self.provider
        object.__setattr__(self, "forwarder", p if isinstance(p, Passthrough) else None)
        object.__setattr__(self, "completer", p if isinstance(p, Completer) else None)
        object.__setattr__(self, "embedder", p if isinstance(p, Embedder) else None)
        object.__setattr__(self, "token_counter", p if isinstance(p, TokenCounter) else None)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    deployments: tuple[Deployment, ...]
    private: bool = False
    created: int = 0
    context_window: int | None = None
    # Strategies, tiers, fallbacks, budgets, cold start (routing/route.py); None: the configured
    # order of one tier, nothing else (the plain path costs no more than that).
    route: Route | None = field(default=None, compare=False)


class Aliases:
    """`model_aliases` patterns, compiled once; the most specific (most literal characters) wins,
    so `claude-haiku-*` beats `claude-*` beats `*` whatever their order in the file. Answers are
    cached, misses included (up to a bound: names come from clients)."""

    def __init__(self, aliases: dict[str, str]):
        ordered = sorted(aliases.items(), key=lambda item: -sum(c not in "*?[]" for c in item[0]))
        self._patterns = [(re.compile(translate(pat)), target) for pat, target in ordered]
        self._cache: dict[str, str | None] = {}

    def target(self, name: str) -> str | None:
        try:
            return self._cache[name]
        except KeyError:
            pass
        target = next((t for rx, t in self._patterns if rx.match(name)), None)
        if len(self._cache) < 4096:
            self._cache[name] = target
        return target


class ModelTable:
    """The models by public name, with alias resolution and access checks."""

    def __init__(self, models: dict[str, ModelEntry], aliases: dict[str, str],
                 defaults: dict[str, str] | None = None, virtual: dict[str, ModelEntry] | None = None):
        self.models = models
        self.aliases = Aliases(aliases)
        self.defaults = defaults or {}  # group -> its default_model (routing/policy_routes.py)
        # virtual models (routing/virtual.py), listed with the models; never resolved to (no deployments)
        self.virtual = virtual or {}

    def requested(self, name: str, principal: Principal) -> str:
        """The model a request without one ('') or with `model: default` asks for: its group's
        default model, when it has one (a model named `default` is itself); else `name`."""
        if name and (name != DEFAULT or name in self.models):
            return name
        group = principal.group
        return (self.defaults.get(group) if group is not None else None) or name

    def resolve(self, name: str, principal: Principal) -> ModelEntry:
        entry = self.models.get(name)
        if entry is None:
            target = self.aliases.target(name)
            entry = self.models.get(target) if target else None
        if entry is None:
            raise NotFound(f"The model '{name}' does not exist.", param="model")
        if principal.allowed is not None and entry.name not in principal.allowed:
            raise PermissionDenied(f"You are not allowed to use the model '{name}'.", param="model")
        return entry

    def visible(self, principal: Principal) -> list[ModelEntry]:
        allowed = principal.allowed
        listed = [m for n, m in self.models.items() if allowed is None or n in allowed]
        if not self.virtual:
            return listed
        return listed + [v for n, v in self.virtual.items() if allowed is None or n in allowed]
