"""Usage and metrics routes: GET /admin/usage (admin key), GET /v1/usage/me (a consumer's
own key: only its own rows, whatever filters it sends) and GET /metrics (Prometheus)."""
from __future__ import annotations

import hmac

from gatehouse.api.admin import require_admin
from gatehouse.api.http import Request, header_list, send_bytes, send_json
from gatehouse.errors import AuthenticationFailed, InvalidRequest, NotFound, PermissionDenied
from gatehouse.gateway.exchange import Exchange
from gatehouse.metering.report import UsageQuery, UsageQueryError, parse_query, render_csv, rows_json
from gatehouse.observability.metrics import CONTENT_TYPE
from gatehouse.policy.auth import key_from_headers
from gatehouse.runtime import Runtime
from gatehouse.store.ledger import usage_report

MY_GROUPINGS = ("model", "day", "key")


def _query(req: Request, allowed_by: tuple[str, ...] | None = None) -> tuple[UsageQuery, str]:
    params = req.query
    fmt = params.get("format") or "json"
    if fmt not in ("json", "csv"):
        raise InvalidRequest("format: must be json or csv.", param="format")
    try:
        query = parse_query(params, allowed_by=allowed_by) if allowed_by else parse_query(params)
    except UsageQueryError as e:
        raise InvalidRequest(str(e) + ".", param=str(e).split(":", 1)[0]) from None
    return query, fmt


async def _answer(rt: Runtime, req: Request, ex: Exchange, query: UsageQuery, fmt: str) -> None:
    rows = await usage_report(rt.store, query.by, query.since, query.until, consumer=query.consumer,
                              group=query.group, model=query.model, status=query.status)
    if fmt == "csv":
        await send_bytes(req.send, 200, render_csv(query.by, rows).encode(), header_list(ex.request_id),
                         b"text/csv; charset=utf-8")
    else:
        await send_json(req.send, 200, rows_json(query, rows), header_list(ex.request_id))


async def admin_usage(rt: Runtime, req: Request, ex: Exchange) -> None:
    require_admin(rt, req)
    query, fmt = _query(req)
    await _answer(rt, req, ex, query, fmt)


async def my_usage(rt: Runtime, req: Request, ex: Exchange) -> None:
    principal = await rt.auth.authenticate(req.headers)
    ex.principal = principal
    query, fmt = _query(req, MY_GROUPINGS)
    if query.consumer not in (None, principal.consumer) or query.group is not None:
        raise PermissionDenied("You can only see your own usage.", code="usage_not_allowed")
    query.consumer = principal.consumer  # never anyone else's rows
    await _answer(rt, req, ex, query, fmt)


async def metrics(rt: Runtime, req: Request, ex: Exchange) -> None:
    cfg = rt.cfg.metrics
    if not cfg.enabled or rt.meter is None:
        raise NotFound("Metrics are disabled (metrics.enabled: false).", code="metrics_disabled")
    given = (key_from_headers(req.headers) or "").encode()
    allowed = [k.encode() for k in (cfg.token, rt.admin_key) if k]
    if not allowed:
        raise PermissionDenied("Metrics need a token: set metrics.token or admin.key in the configuration.",
                               code="metrics_disabled")
    ok = False
    for k in allowed:  # compare with every token so timing does not tell which one matched
        ok |= hmac.compare_digest(given, k)
    if not ok:
        raise AuthenticationFailed("Invalid metrics token.", code="invalid_metrics_token")
    await rt.meter.metrics.evals.refresh(rt.store)
    body = rt.meter.metrics.render() if rt.worker_metrics is None else await rt.worker_metrics.render()
    await send_bytes(req.send, 200, body, header_list(ex.request_id), CONTENT_TYPE.encode())
