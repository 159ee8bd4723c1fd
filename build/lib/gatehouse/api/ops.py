"""Liveness and readiness."""
from __future__ import annotations

import asyncio

from gatehouse.api.http import Request, header_list, send_json
from gatehouse.policy.pipeline import Exchange
from gatehouse.runtime import Runtime


async def healthz(rt: Runtime, req: Request, ex: Exchange) -> None:
    await send_json(req.send, 200, {"status": "ok"}, header_list(ex.request_id))


async def readyz(rt: Runtime, req: Request, ex: Exchange) -> None:
    checks: dict[str, str] = {"config": "loaded" if rt.ready else "not loaded"}
    ok = rt.ready and not rt.draining
    if rt.draining:
        checks["server"] = "draining"
    try:
        await asyncio.wait_for(rt.store.ping(), 2.0)
        checks["store"] = "ok"
    except Exception:
        checks["store"] = "unreachable"
        ok = False
    await send_json(req.send, 200 if ok else 503, {"status": "ready" if ok else "not ready", "checks": checks},
                    header_list(ex.request_id))
