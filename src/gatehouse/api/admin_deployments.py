"""GET /admin/deployments: every model's routing and its deployments' state (routing/status.py)."""
from __future__ import annotations

from gatehouse.api.admin import require_admin
from gatehouse.api.http import Request, header_list, send_json
from gatehouse.gateway.exchange import Exchange
from gatehouse.routing.status import models_state
from gatehouse.runtime import Runtime


async def list_deployments(rt: Runtime, req: Request, ex: Exchange) -> None:
    require_admin(rt, req)
    await send_json(req.send, 200, {"models": models_state(rt.models)}, header_list(ex.request_id))
