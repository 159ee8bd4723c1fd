"""DELETE /admin/cache: drop response cache entries (all, or those of a model and/or a group)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from gatehouse.api.admin import audit_trail, require_admin
from gatehouse.api.http import Request, header_list, send_json

if TYPE_CHECKING:
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.runtime import Runtime


async def clear_cache(rt: Runtime, req: Request, ex: Exchange) -> None:
    """?model=<name> and/or ?group=<name> narrow it; the answer says how many entries went
    (entries of a `scope: global` cache belong to no group: only a clear without ?group drops them)."""
    require_admin(rt, req)
    q = req.query
    model, group = q.get("model") or None, q.get("group") or None
    removed = await rt.cache.clear(model, group) if rt.cache is not None else 0
    await audit_trail(rt, req, ex).record("cache.clear", model or "*", {"group": group or "*", "removed": removed})
    await send_json(req.send, 200, {"removed": removed, "model": model, "group": group}, header_list(ex.request_id))
