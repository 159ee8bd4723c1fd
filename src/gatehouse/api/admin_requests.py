"""GET /admin/requests/{request_id}: what one request cost and where it went, after the fact.

The ledger's attempts (which deployment served it, tokens, cost, status, latency) and the
audit log's guardrail events (matches only, never the matched text). The playground shows
this under each answer: a stream's cost is in no header (they are sent before the answer),
and the output guardrails decide after the headers are gone. Both stores are written off
the request path, so a request just answered may take a flush period to appear (404 until then).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from gatehouse.api.admin import require_admin
from gatehouse.api.http import Request, header_list, send_json
from gatehouse.errors import NotFound
from gatehouse.store.audit_sql import AuditStore
from gatehouse.store.schema import usage_records

if TYPE_CHECKING:
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.runtime import Runtime

LOOKBACK = 7 * 86_400.0  # guardrail events are searched this far back


async def request_summary(rt: Runtime, req: Request, ex: Exchange) -> None:
    require_admin(rt, req)
    rid = req.path_params["request_id"][:128]
    t = usage_records.c
    q = (sa.select(t.request_id, t.attempt, t.model, t.provider, t.deployment, t.status, t.error_type, t.input_tokens,
                   t.output_tokens, t.cost_usd, t.latency_ms, t.ttft_ms, t.streamed, t.cache_hit, t.consumer,
                   t.route, t.data_class, t.routed_to)
         .where(sa.or_(t.request_id == rid, t.client_request_id == rid)).order_by(t.attempt).limit(50))
    async with rt.store.engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    # guardrail events carry the gateway's own id; the client may have asked by its x-request-id
    audit, since = AuditStore(rt.store), time.time() - LOOKBACK
    events = [e for gid in sorted({rid, *(r.request_id for r in rows)})
              for e in await audit.query(since=since, kind="guardrail", request_id=gid)]
    if not rows and not events:
        raise NotFound(f"No request '{rid[:60]}' in the ledger (yet).", code="unknown_request")
    attempts = [{"attempt": r.attempt, "model": r.model, "provider": r.provider, "deployment": r.deployment,
                 "status": r.status, "error_type": r.error_type, "input_tokens": r.input_tokens,
                 "output_tokens": r.output_tokens, "cost_usd": r.cost_usd, "latency_ms": r.latency_ms,
                 "ttft_ms": r.ttft_ms, "streamed": r.streamed, "cache_hit": r.cache_hit,
                 "route_reason": r.route, "data_class": r.data_class, "routed_to": r.routed_to} for r in rows]
    served = next((a for a in reversed(attempts) if a["status"] < 400), attempts[-1] if attempts else None)
    out: dict[str, Any] = {
        "request_id": rid, "attempts": attempts,
        "route": f"{served['provider']}/{served['deployment']}" if served is not None else None,
        "input_tokens": sum(a["input_tokens"] for a in attempts),
        "output_tokens": sum(a["output_tokens"] for a in attempts),
        "cost_usd": sum(a["cost_usd"] for a in attempts),
        "guardrails": [{k: e.detail.get(k) for k in ("policy", "check", "action", "stage", "category")}
                       for e in events],
    }
    await send_json(req.send, 200, out, header_list(ex.request_id))
