"""Routing strategies: the order in which the deployments of one priority tier are tried.

A strategy is one small object per tier with `order(deployments, ex)`, built once at load from the
tier's deployments (`STRATEGIES[name](deployments)`), so a decision never sorts or allocates more
than a generator: the first pick is O(1) (a precomputed weighted schedule, or two random
candidates), the rest of the order is only worked out when the first attempt failed. The Router
(routing/router.py, routing/route.py) skips ejected deployments lazily.

`least-busy` and `latency` read each deployment's `Load` (requests in flight, peak-EWMA of the time
to first byte), which `LoadHook`, an attempt hook, keeps up to date.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from random import random as _random
from typing import TYPE_CHECKING, Protocol

from gatehouse.routing.affinity import MAX_KEYS, PrefixAffinity, request_key

if TYPE_CHECKING:
    from gatehouse.config.schema import Config, ModelConfig
    from gatehouse.errors import GatehouseError
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.routing.table import Deployment

# load-aware: what a prefix match takes off a deployment's score (one waiting request counts 2,
# a full KV cache 20, a running request 1), unless the model's routing.prefix_weight says otherwise
PREFIX_WEIGHT = 3.0
# Peak-EWMA decay (Finagle's default): a latency observed this long ago weighs 1/e.
DECAY_SECONDS = 10.0


class Load:
    """One deployment's load as this process sees it, shared by every model using it."""

    __slots__ = ("ewma", "in_flight", "kv_cache", "queue", "queue_threshold", "running", "saturated",
                 "scraped_at", "stamp")

    def __init__(self) -> None:
        self.in_flight = 0
        self.ewma = 0.0  # seconds to first byte; 0: not measured yet (tried first, to measure it)
        self.stamp = 0.0  # monotonic time of the last observation
        # the engine's own numbers (load-aware: routing/scrape.py); scraped_at 0: none
        self.queue = 0.0
        self.running = 0.0
        self.kv_cache = 0.0
        self.scraped_at = 0.0
        self.queue_threshold = 16.0
        self.saturated = False  # its queue is above the threshold: others first

    def observe(self, seconds: float, now: float) -> None:
        """Peak-EWMA: a slower observation is taken at once, a faster one decays in."""
        if seconds >= self.ewma:
            self.ewma = seconds
        else:
            w = math.exp(-(now - self.stamp) / DECAY_SECONDS)
            self.ewma = self.ewma * w + seconds * (1.0 - w)
        self.stamp = now

    def cost(self) -> float:
        return self.ewma * (self.in_flight + 1)


class Strategy(Protocol):
    def order(self, deployments: tuple[Deployment, ...], ex: Exchange) -> Iterable[Deployment]: ...


class Ordered:
    """The configured order: the first deployment first, the others as fallbacks."""

    __slots__ = ()

    def __init__(self, deployments: tuple[Deployment, ...] = ()) -> None:
        pass

    def order(self, deployments: tuple[Deployment, ...], ex: Exchange) -> Iterable[Deployment]:
        return deployments


def smooth_schedule(weights: list[int]) -> tuple[int, ...]:
    """nginx's smooth weighted round robin, unrolled once at load: one full cycle of indices in
    which each appears `weight` times, spread out (5,1,1 -> a a b a c a a, not a a a a a b c)."""
    g = math.gcd(*weights)
    weights = [w // g for w in weights]
    total = sum(weights)
    if total > 10_000:  # a cycle that long is not worth unrolling: scale it down
        weights = [max(1, round(w * 10_000 / total)) for w in weights]
        total = sum(weights)
    current = [0] * len(weights)
    out = []
    for _ in range(total):
        for i, w in enumerate(weights):
            current[i] += w
        best = max(range(len(weights)), key=current.__getitem__)
        current[best] -= total
        out.append(best)
    return tuple(out)


class Weighted:
    """Each deployment takes its `weight` share, spread evenly (smooth weighted round robin from a
    schedule built at load); on failure, the others in the configured order."""

    __slots__ = ("next", "schedule")

    def __init__(self, deployments: tuple[Deployment, ...]) -> None:
        self.schedule = smooth_schedule([d.weight for d in deployments]) if deployments else (0,)
        self.next = 0

    def order(self, deployments: tuple[Deployment, ...], ex: Exchange) -> Iterator[Deployment]:
        i = self.next
        self.next = i + 1 if i + 1 < len(self.schedule) else 0
        first = deployments[self.schedule[i]]
        yield first
        for dep in deployments:
            if dep is not first:
                yield dep


def _two_choices(deployments: tuple[Deployment, ...], score: Callable[[Deployment], float]) -> Iterator[Deployment]:
    """Power of two choices on `score`: two random candidates, the lighter first; then, only if
    asked (a failover), the rest from lightest to heaviest."""
    n = len(deployments)
    if n == 1:
        yield deployments[0]
        return
    # two distinct indices, uniform (random() rather than randrange(): a tenth of the cost)
    i = int(_random() * n)
    j = int(_random() * (n - 1))
    if j >= i:
        j += 1
    a, b = deployments[i], deployments[j]
    if score(b) < score(a):
        a, b = b, a
    yield a
    rest = sorted((d for d in deployments if d is not a), key=score)  # failover only
    yield from rest


def _in_flight(dep: Deployment) -> float:
    load = dep.load
    return 0.0 if load is None else load.in_flight


def _cost(dep: Deployment) -> float:
    load = dep.load
    return 0.0 if load is None else load.cost()


class LeastBusy:
    """The deployment with fewer requests in flight of two picked at random (power of two
    choices: near-optimal balance without scanning every deployment)."""

    __slots__ = ()

    def __init__(self, deployments: tuple[Deployment, ...]) -> None:
        pass

    def order(self, deployments: tuple[Deployment, ...], ex: Exchange) -> Iterator[Deployment]:
        return _two_choices(deployments, _in_flight)


class Latency:
    """Peak-EWMA: of two picked at random, the one whose time to first byte times its requests in
    flight is lower; a deployment not measured yet goes first (so it gets measured)."""

    __slots__ = ()

    def __init__(self, deployments: tuple[Deployment, ...]) -> None:
        pass

    def order(self, deployments: tuple[Deployment, ...], ex: Exchange) -> Iterator[Deployment]:
        return _two_choices(deployments, _cost)


def engine_score(dep: Deployment) -> float:
    """Lower is better: 2 × the engine's waiting requests + 20 × its KV cache use (0..1) + its
    running requests, or the requests this gateway has on it when more (they include this
    gateway's own and cover the time between scrapes; and an engine that exports no KV cache
    use, as current llama.cpp, still shows its busy slots)."""
    load = dep.load
    if load is None:
        return 0.0
    if not load.scraped_at:
        return float(load.in_flight)
    return 2.0 * load.queue + 20.0 * load.kv_cache + max(load.running, load.in_flight)


class LoadAware:
    """The deployment whose engine reports the least queue and KV cache use (scraped off the
    request path: routing/scrape.py), counting what this gateway has in flight there. One
    pass over the tier; saturated deployments (queue above the threshold) come after all tiers.

    The prefix term: the deployment that served this request's prefix last (routing/affinity.py's
    key: the same conversation, the same agent session, the same system prompt) has
    `prefix_weight` taken off its score, so a conversation stays where its prefix is cached until
    that deployment carries more than `prefix_weight` more load than the lightest one (the
    Inference Extension's picker weighs a prefix match 3 beside queue 2 and KV cache 2). The
    placements of the most recent MAX_KEYS prefixes are kept; 0 turns the term off."""

    __slots__ = ("placed", "prefix_weight")

    def __init__(self, deployments: tuple[Deployment, ...], prefix_weight: float = PREFIX_WEIGHT) -> None:
        self.prefix_weight = prefix_weight
        self.placed: OrderedDict[int, Deployment] = OrderedDict()

    def order(self, deployments: tuple[Deployment, ...], ex: Exchange) -> Iterator[Deployment]:
        weight = self.prefix_weight
        key = request_key(ex) if weight else None
        if key is None:
            best = min(deployments, key=engine_score)
        else:
            placed = self.placed
            held = placed.get(key)
            if held is None or (held.load is not None and held.load.saturated):
                best = min(deployments, key=engine_score)
            else:
                best = min(deployments, key=lambda d: engine_score(d) - weight if d is held else engine_score(d))
            if best.load is None or not best.load.saturated:  # (a saturated one is passed over)
                placed[key] = best
                placed.move_to_end(key)
                if len(placed) > MAX_KEYS:
                    placed.popitem(last=False)
        yield best
        yield from sorted((d for d in deployments if d is not best), key=engine_score)  # failover only


STRATEGIES: dict[str, type[Ordered] | type[Weighted] | type[LeastBusy] | type[Latency] | type[PrefixAffinity]
                 | type[LoadAware]] = {
    "ordered": Ordered, "weighted": Weighted, "least-busy": LeastBusy, "latency": Latency,
    "prefix-affinity": PrefixAffinity, "load-aware": LoadAware}


def self_hosted_pool(cfg: Config, m: ModelConfig) -> bool:
    """Several deployments, every one self-hosted: an Ollama provider, or marked `private: true`
    (on the deployment or the model: inference that may see any data, i.e. one's own)."""
    return len(m.deployments) > 1 and all(
        m.private or d.private or getattr(cfg.providers.get(d.provider), "type", None) == "ollama"
        for d in m.deployments)


def model_strategy(cfg: Config, m: ModelConfig) -> str:
    """The model's `routing.strategy`; unset: `prefix-affinity` for a self-hosted pool (its
    replicas' prefix caches are reused), else `ordered`."""
    chosen = m.routing.strategy if m.routing is not None else None
    if chosen is not None:
        return chosen
    return "prefix-affinity" if self_hosted_pool(cfg, m) else "ordered"


# Strategies that read Load: their deployments get one, and the runtime adds LoadHook.
LOAD_AWARE = frozenset({"least-busy", "latency", "load-aware"})


class LoadHook:
    """The attempt hook that keeps `Load` current: in flight from start to end, the time to first
    byte at `answered`, and a failure counted as at least as slow as the slowest seen (a refused
    connection is quick, and must not look like a fast deployment)."""

    __slots__ = ()

    def started(self, ex: Exchange, dep: Deployment) -> None:
        load = dep.load
        if load is not None:
            load.in_flight += 1
            ex.attempt_started = time.monotonic()

    def answered(self, ex: Exchange, dep: Deployment) -> None:
        load = dep.load
        if load is not None:
            now = time.monotonic()
            load.observe(now - ex.attempt_started, now)

    def ended(self, ex: Exchange, dep: Deployment, error: GatehouseError | None) -> None:
        load = dep.load
        if load is not None:
            load.in_flight -= 1
            if error is not None:
                now = time.monotonic()
                load.observe(max(now - ex.attempt_started, 2.0 * load.ewma, 1.0), now)
