"""GET /admin/deployments: each model's deployments as the router sees them now (breaker
state, ejection, in-flight upstream connections) and recently (requests, errors and latency
from the ledger over the last `window` seconds). The admin UI's Models page reads it.

The live part is routing/status.py's (strategy, fallbacks, cold-start queue; per deployment
the breaker state — healthy, probing, cooling after a 429, ejected — priority, weight, in-flight
and latency where tracked, the engine's scraped load); this adds each provider's upstream
connections in use (upstream/pool.py) and the ledger's recent figures. No request is made to
any upstream; hosts and credentials are never shown.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from gatehouse.api.admin import require_admin
from gatehouse.api.http import Request, header_list, send_json
from gatehouse.errors import InvalidRequest
from gatehouse.routing.status import models_state
from gatehouse.store.schema import usage_records

if TYPE_CHECKING:
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.runtime import Runtime

DEFAULT_WINDOW = 900.0  # seconds of ledger the "recent" figures cover
MAX_WINDOW = 86_400.0


async def _recent(rt: Runtime, since: float) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(model, provider, upstream model) -> requests, errors, latency of upstream attempts since `since`."""
    t = usage_records.c
    errors = sa.func.sum(sa.case((t.status >= 400, 1), else_=0))
    q = (sa.select(t.model, t.provider, t.deployment, sa.func.count(), errors,
                   sa.func.avg(t.latency_ms), sa.func.max(t.latency_ms), sa.func.avg(t.ttft_ms))
         .where(t.ts >= since, t.cache_hit.is_(False))
         .group_by(t.model, t.provider, t.deployment))
    async with rt.store.engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    return {(r[0], r[1], r[2]): {"requests": int(r[3]), "errors": int(r[4] or 0),
                                 "latency_ms_avg": _ms(r[5]), "latency_ms_max": _ms(r[6]), "ttft_ms_avg": _ms(r[7])}
            for r in rows}


def _ms(v: Any) -> float | None:
    return None if v is None else round(float(v), 1)


async def list_deployments(rt: Runtime, req: Request, ex: Exchange) -> None:
    """?window=<seconds> (default 900, at most a day) for the recent figures."""
    require_admin(rt, req)
    raw = req.query.get("window") or str(int(DEFAULT_WINDOW))
    try:
        window = float(raw)
    except ValueError:
        window = -1.0
    if not 0 < window <= MAX_WINDOW:
        raise InvalidRequest(f"'window' must be a number of seconds from 1 to {int(MAX_WINDOW)}.", param="window")
    recent = await _recent(rt, time.time() - window)
    models = models_state(rt.table.models)
    for model, entry in zip(models, rt.table.models.values()):
        model["private"] = entry.private
        for view, d in zip(model["deployments"], entry.deployments):
            provider_cfg = rt.cfg.providers.get(d.provider_name)
            cap = getattr(d.provider, "connections", None)
            view["type"] = provider_cfg.type if provider_cfg is not None else ""
            # upstream connections in use, per provider (shared by its deployments)
            view["provider_connections"] = None if cap is None else {"in_use": cap.active, "max": cap.size}
            view["recent"] = recent.get((entry.name, d.provider_name, d.upstream_model))
    await send_json(req.send, 200, {"window_seconds": window, "models": models}, header_list(ex.request_id))
