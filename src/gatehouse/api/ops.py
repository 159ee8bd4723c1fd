"""Liveness and readiness.

Readiness means "this process can serve": 503 while the config is not loaded, while draining,
and while the journal's disk refuses ledger records (a SIGKILL would lose the ones held in
memory; docs/operations.md#disk-full). Outages the gateway absorbs keep it ready and are
reported in the JSON detail: the SQL store (the journal holds the ledger until it is back),
Redis (limits per replica, or 503 under limits.on_store_error: closed) and ejected
deployments. Every replica sees those alike, so pulling them all would only stop service.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from gatehouse.api.http import Request, header_list, send_json
from gatehouse.gateway.exchange import Exchange
from gatehouse.runtime import Runtime


async def healthz(rt: Runtime, req: Request, ex: Exchange) -> None:
    await send_json(req.send, 200, {"status": "ok"}, header_list(ex.request_id))


async def readyz(rt: Runtime, req: Request, ex: Exchange) -> None:
    checks: dict[str, Any] = {"config": "loaded" if rt.ready else "not loaded"}
    checks["config_generation"] = rt.generation
    if rt.config_sha256:
        checks["config_sha256"] = rt.config_sha256[:12]
    ok = rt.ready and not rt.draining
    if rt.draining:
        checks["server"] = "draining"
    try:
        await asyncio.wait_for(rt.store.ping(), 2.0)
        checks["store"] = "ok"
    except Exception:
        checks["store"] = "unreachable"
    if rt.meter is not None:
        journal, writer = rt.meter.journal, rt.meter.writer
        if journal.failing_since is not None:
            ok = False
            checks["journal"] = "unwritable"
            checks["journal_failing_seconds"] = round(time.monotonic() - journal.failing_since)
        else:
            checks["journal"] = "ok"
        checks["ledger_backlog"] = journal.backlog + len(journal.overflow)
        checks["ledger_in_memory"] = len(journal.overflow)
        if writer.failing_since is not None:
            checks["ledger_store"] = "failing; records wait in the journal"
    if rt.limiter is not None:
        stats = rt.limiter.stats
        if stats.backend == "redis":
            checks["redis"] = "ok" if stats.store_up else \
                f"unreachable (limits: {'per replica' if rt.cfg.limits.on_store_error == 'open' else '503'})"
    ejected = [f"{provider}/{model}" for provider, model in rt.health.ejected()]
    if ejected:
        checks["ejected_deployments"] = ejected
    await send_json(req.send, 200 if ok else 503, {"status": "ready" if ok else "not ready", "checks": checks},
                    header_list(ex.request_id))
