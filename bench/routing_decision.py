"""How long one routing decision takes (issue 16: at most 20 µs for every strategy).

Builds the routing table from a config the way runtime.py does (echo provider, N deployments per
model) and times `Router.plan(entry, ex)` up to the first deployment (what every request pays),
and the whole plan walked (what a request that fails over everywhere pays), per strategy.

    PYTHONPATH=src .venv/bin/python bench/routing_decision.py [--deployments 3 16] [--n 200000]
"""
from __future__ import annotations

import argparse
import time
from typing import Any

from gatehouse.config import from_mapping
from gatehouse.gateway.exchange import Exchange
from gatehouse.providers.registry import PROVIDERS
from gatehouse.routing.health import Health
from gatehouse.routing.route import build_routes
from gatehouse.routing.router import Router
from gatehouse.routing.strategies import Ordered
from gatehouse.routing.table import Deployment, ModelEntry
from gatehouse.upstream.client import HttpPool


def table(n: int) -> dict[str, ModelEntry]:
    models: list[dict[str, Any]] = [{"name": "plain", "deployments": [{"provider": "e", "model": "plain"}]}]
    for strategy in ("ordered", "weighted", "least-busy", "latency", "prefix-affinity", "load-aware"):
        models.append({"name": strategy, "routing": {"strategy": strategy},
                       "deployments": [{"provider": "e", "model": f"{strategy}-{i}",
                                        **({"weight": i + 1} if strategy == "weighted" else {})}
                                       for i in range(n)]})
    models.append({"name": "tiers", "routing": {"strategy": "least-busy"},
                   "deployments": [{"provider": "e", "model": f"t-{i}", "priority": 1 + i % 2} for i in range(n)]})
    # a LoRA adapter of the least-busy model: its strategy wrapped to put loaded replicas first
    models.append({"name": "lora-adapter", "adapter": {"base": "least-busy", "name": "sql"}})
    cfg = from_mapping({"providers": {"e": {"type": "echo"}}, "models": models}, {})
    provider = PROVIDERS["echo"]("e", cfg.providers["e"], HttpPool())
    health = Health()
    entries = {m.name: ModelEntry(m.name, tuple(Deployment("e", provider, d.model, d.weight,
                                                           breaker=health.breaker("e", d.model, 3, 5.0, 60.0))
                                                for d in m.deployments)) for m in cfg.models}
    return build_routes(cfg, entries, health, HttpPool())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--deployments", type=int, nargs="+", default=[3, 16])
    ap.add_argument("--n", type=int, default=200_000)
    args = ap.parse_args()
    router = Router(Ordered())
    ex = Exchange("r", "chat", "openai")
    # prefix-affinity reads the body: a coding agent's (a 20 KB system prompt, a conversation)
    from gatehouse.gateway.endpoint import Call

    ex.call = Call("m", {"system": [{"type": "text", "text": "You are a coding agent. " * 800}],
                         "messages": [{"role": "user", "content": [{"type": "text", "text": "fix the build"}]},
                                      {"role": "assistant", "content": "ok"}] * 20}, None)
    print(f"{'deployments':>11} {'model':>15} {'first pick µs':>14} {'whole plan µs':>14}")
    for n in args.deployments:
        for name, entry in table(n).items():
            if name == "plain" and n != args.deployments[0]:
                continue
            for label, walk in (("first", lambda e: next(iter(router.plan(e, ex)))),
                                ("all", lambda e: list(router.plan(e, ex)))):
                best = float("inf")
                for _ in range(5):
                    t = time.perf_counter()
                    for _ in range(args.n // 5):
                        walk(entry)
                    best = min(best, (time.perf_counter() - t) / (args.n // 5))
                if label == "first":
                    first = best
            print(f"{len(entry.deployments):>11} {name:>15} {first * 1e6:>14.2f} {best * 1e6:>14.2f}")


if __name__ == "__main__":
    main()
