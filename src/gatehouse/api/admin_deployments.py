"""GET /admin/deployments: each model's deployments as the router sees them now (breaker
state, ejection, in-flight upstream connections) and recently (requests, errors and latency
from the ledger over the last `window` seconds). The admin UI's Models page reads it.

The answer has the shape of the routing helper's routing/status.py (`models`: `name`,
`deployments`: `provider`, `model`, `state`, `retry_in_seconds`, ...), so the two can be merged
into one route: this adds `recent`, `provider_connections`, `type` and `window_seconds`.

The live part is read from the routing table's breakers (routing/health.py) and the
providers' connection caps (upstream/pool.py): no request is made to any upstream. Hosts and
credentials are never shown.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from gatehouse.api.admin import require_admin
from gatehouse.api.http import Request, header_list, send_json
from gatehouse.errors import InvalidRequest
from gatehouse.store.schema import usage_records

if TYPE_CHECKING:
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.routing.health import Breaker
    from gatehouse.runtime import Runtime

DEFAULT_WINDOW = 900.0  # seconds of ledger the "recent" figures cover
MAX_WINDOW = 86_400.0


def breaker_view(b: Breaker, now: float) -> dict[str, Any]:
    """healthy | probing (an ejection ran out and one request was let through; not reported yet)
    | ejected (for `retry_in_seconds` more). The same states and names as the routing helper's
    routing/status.py, which adds `cooling`."""
    if not b.ejected_until or now >= b.ejected_until:
        state = "probing" if b.probing else "healthy"
    else:
        state = "ejected"
    return {"state": state, "retry_in_seconds": round(b.retry_after(now), 3), "consecutive_failures": b.failures,
            "ejections": b.ejections}


async def _recent(rt: Runtime, since: float) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(model, provider, upstream model) -> requests, errors, latency of upstream attempts since `since`."""
    t = usage_records.c
    q = (sa.select(t.model, t.provider, t.deployment, sa.func.count(), sa.func.sum(sa.case((t.status >= 400, 1), else_=0)),
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
    now = time.monotonic()
    out = []
    for entry in rt.table.models.values():
        deps = []
        for d in entry.deployments:
            provider_cfg = rt.cfg.providers.get(d.provider_name)
            cap = getattr(d.provider, "connections", None)
            deps.append({
                "provider": d.provider_name, "type": provider_cfg.type if provider_cfg is not None else "",
                "model": d.upstream_model, "weight": d.weight, **breaker_view(d.breaker, now),
                # upstream connections in use, per provider (shared by its deployments)
                "provider_connections": None if cap is None else {"in_use": cap.active, "max": cap.size},
                "recent": recent.get((entry.name, d.provider_name, d.upstream_model)),
            })
        out.append({"name": entry.name, "private": entry.private, "deployments": deps})
    await send_json(req.send, 200, {"window_seconds": window, "models": out}, header_list(ex.request_id))
