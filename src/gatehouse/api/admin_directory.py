"""Admin API for groups, consumers and the limits store. Every route requires the admin key.

After a change this replica reloads its directory at once; the others see the store's
version move within half a second.
"""
from __future__ import annotations

from typing import Any

from gatehouse.api.admin import directory_admin, require_admin
from gatehouse.api.http import Request, header_list, send_json
from gatehouse.gateway.exchange import Exchange
from gatehouse.policy.directory_admin import DirectoryAdmin
from gatehouse.runtime import Runtime
from gatehouse.wire.common import decode_json_object


def _admin(rt: Runtime, req: Request, ex: Exchange) -> DirectoryAdmin:
    return directory_admin(rt, req, ex)


async def _body(rt: Runtime, req: Request) -> dict[str, Any]:
    return decode_json_object(await req.json_body(rt.cfg.server.max_body_bytes))


async def _changed(rt: Runtime) -> None:
    assert rt.access is not None
    await rt.access.reload()


async def _reply(req: Request, ex: Exchange, status: int, obj: Any) -> None:
    await send_json(req.send, status, obj, header_list(ex.request_id))


# ---- groups ------------------------------------------------------------------------------------


async def create_group(rt: Runtime, req: Request, ex: Exchange) -> None:
    require_admin(rt, req)
    view = await _admin(rt, req, ex).create_group(await _body(rt, req))
    await _changed(rt)
    await _reply(req, ex, 201, view)


async def list_groups(rt: Runtime, req: Request, ex: Exchange) -> None:
    require_admin(rt, req)
    await _reply(req, ex, 200, {"data": await _admin(rt, req, ex).list_groups()})


async def show_group(rt: Runtime, req: Request, ex: Exchange) -> None:
    require_admin(rt, req)
    await _reply(req, ex, 200, await _admin(rt, req, ex).get_group(req.path_params["name"]))


async def update_group(rt: Runtime, req: Request, ex: Exchange) -> None:
    require_admin(rt, req)
    view = await _admin(rt, req, ex).update_group(req.path_params["name"], await _body(rt, req))
    await _changed(rt)
    await _reply(req, ex, 200, view)


async def delete_group(rt: Runtime, req: Request, ex: Exchange) -> None:
    require_admin(rt, req)
    name = req.path_params["name"]
    await _admin(rt, req, ex).delete_group(name)
    await _changed(rt)
    await _reply(req, ex, 200, {"name": name, "deleted": True})


# ---- consumers ---------------------------------------------------------------------------------


async def create_consumer(rt: Runtime, req: Request, ex: Exchange) -> None:
    require_admin(rt, req)
    view = await _admin(rt, req, ex).create_consumer(await _body(rt, req))
    await _changed(rt)
    await _reply(req, ex, 201, view)


async def list_consumers(rt: Runtime, req: Request, ex: Exchange) -> None:
    require_admin(rt, req)
    await _reply(req, ex, 200, {"data": await _admin(rt, req, ex).list_consumers(req.query.get("group"))})


async def show_consumer(rt: Runtime, req: Request, ex: Exchange) -> None:
    require_admin(rt, req)
    await _reply(req, ex, 200, await _admin(rt, req, ex).get_consumer(req.path_params["name"]))


async def update_consumer(rt: Runtime, req: Request, ex: Exchange) -> None:
    require_admin(rt, req)
    view = await _admin(rt, req, ex).update_consumer(req.path_params["name"], await _body(rt, req))
    await _changed(rt)
    await _reply(req, ex, 200, view)


async def delete_consumer(rt: Runtime, req: Request, ex: Exchange) -> None:
    """Delete a consumer and revoke all its keys."""
    require_admin(rt, req)
    name = req.path_params["name"]
    await _admin(rt, req, ex).delete_consumer(name)
    await _changed(rt)
    rt.keys.forget()
    await _reply(req, ex, 200, {"name": name, "deleted": True, "keys_revoked": True})


# ---- limits store ------------------------------------------------------------------------------


async def limits_status(rt: Runtime, req: Request, ex: Exchange) -> None:
    require_admin(rt, req)
    assert rt.limiter is not None
    s = rt.limiter.stats
    await _reply(req, ex, 200, {
        "backend": s.backend, "store_up": s.store_up, "on_store_error": rt.cfg.limits.on_store_error,
        "replicas": s.replicas, "store_errors": s.store_errors, "outages": s.outages,
        "fallback_admissions": s.fallback_admissions,
        "abandoned_admissions": s.abandoned_admissions, "compensated_admissions": s.compensated_admissions,
        "store_unavailable_rejections": s.store_unavailable_rejections, "rejections": s.rejections,
    })
