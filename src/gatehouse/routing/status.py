"""What `GET /admin/deployments` shows: each model's routing and each deployment's state as this
process sees it (health, cool-down, load, cold-start queue). Read-only; built on request from the
live routing table (api/admin_deployments.py serves it). Never a URL or a credential: deployments
are named by provider and upstream model, as in the metrics and the ledger.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gatehouse.routing.table import Deployment, ModelEntry


def deployment_state(dep: Deployment, now: float) -> dict[str, Any]:
    b = dep.breaker
    if not b.ejected_until or now >= b.ejected_until:
        state = "probing" if b.probing else "healthy"
    else:
        state = ("not_ready" if b.not_ready else "cooling") if b.cooling else "ejected"
    out: dict[str, Any] = {
        "provider": dep.provider_name, "model": dep.upstream_model, "state": state,
        "retry_in_seconds": round(b.retry_after(now), 3), "consecutive_failures": b.failures,
        "ejections": b.ejections, "priority": dep.priority, "weight": dep.weight,
    }
    if dep.max_in_flight is not None:
        out["max_in_flight"] = dep.max_in_flight
    lora = dep.lora
    if lora is not None and lora.scraped_at:  # an adapter model's: what its engine has loaded
        out["lora_adapters"] = sorted(lora.loaded)
    load = dep.load
    if load is not None:
        out["in_flight"] = load.in_flight
        out["latency_ewma_ms"] = round(load.ewma * 1000, 3)
        if load.scraped_at:
            out["engine"] = {"waiting": load.queue, "running": load.running, "kv_cache": load.kv_cache,
                             "saturated": load.saturated, "age_seconds": round(now - load.scraped_at, 3)}
    return out


def models_state(models: dict[str, ModelEntry]) -> list[dict[str, Any]]:
    now = time.monotonic()
    out = []
    for entry in models.values():
        route = entry.route
        model: dict[str, Any] = {"name": entry.name, "strategy": route.strategy if route else "ordered",
                                 "deployments": [deployment_state(d, now) for d in entry.deployments]}
        if route is not None:
            if route.fallbacks:
                model["fallbacks"] = [f.name for f in route.fallbacks]
            if route.context_fallbacks:
                model["context_window_fallbacks"] = [f.name for f in route.context_fallbacks]
            cold = route.cold_start
            if cold is not None:
                model["cold_start"] = {"waiting": cold.waiting, "cold_starts": cold.cold_starts, "held": cold.held,
                                       "timeouts": cold.timeouts, "last_wait_seconds": round(cold.last_wait_seconds, 3),
                                       "polling": cold.episode is not None and not cold.episode.done()}
        out.append(model)
    return out
