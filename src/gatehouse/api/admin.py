"""Admin API. Every route requires the admin key; without `admin.key` configured, all are denied.
Every change is recorded in the audit log (policy/audit.py); GET /admin/audit reads it."""
from __future__ import annotations

import hmac
import time
from typing import Any

import msgspec

from gatehouse.api.http import Request, header_list, send_json
from gatehouse.errors import AuthenticationFailed, Conflict, InvalidRequest, NotFound, PermissionDenied
from gatehouse.gateway.exchange import Exchange
from gatehouse.metering.report import UsageQueryError, parse_time
from gatehouse.policy.audit import ADMIN_API_ACTOR, AuditTrail
from gatehouse.policy.auth import key_from_headers
from gatehouse.policy.directory_admin import DirectoryAdmin
from gatehouse.policy.key_rotation import rotate
from gatehouse.policy.keys import new_key
from gatehouse.policy.ui_session import ROLE_ADMIN, SAFE_METHODS, cookie_value
from gatehouse.reload import ReloadRejected
from gatehouse.runtime import Runtime
from gatehouse.store.audit_sql import KINDS, MAX_LIMIT, AuditStore
from gatehouse.store.protocols import KeyRecord
from gatehouse.supervisor import ask_reload_broadcast
from gatehouse.wire.common import convert, decode_json_object


class CreateKey(msgspec.Struct, forbid_unknown_fields=True):
    consumer: str
    description: str | None = None
    expires_in_seconds: float | None = None


def require_admin(rt: Runtime, req: Request) -> None:
    if rt.admin_key is None:
        raise PermissionDenied("The admin API is disabled: set admin.key in the configuration.",
                               code="admin_disabled")
    given = key_from_headers(req.headers)
    if given is None and rt.ui is not None and "cookie" in req.headers:
        session = rt.ui.verify(cookie_value(req.headers["cookie"]))
        if session is not None:  # the admin UI: a signed session, and a CSRF token to change anything
            if req.method not in SAFE_METHODS and not rt.ui.csrf_ok(session, req.headers.get("x-csrf-token")):
                raise PermissionDenied("Missing or invalid CSRF token.", code="csrf_failed")
            if req.method not in SAFE_METHODS and session["r"] != ROLE_ADMIN:
                raise PermissionDenied("This admin UI session is read-only.", code="read_only_session")
            return
    if not hmac.compare_digest((given or "").encode(), rt.admin_key.encode()):
        raise AuthenticationFailed("Invalid admin key.", code="invalid_admin_key")


def key_view(r: KeyRecord) -> dict[str, Any]:
    return {
        "id": r.id, "consumer": r.consumer, "prefix": r.prefix, "created_at": r.created_at,
        "revoked_at": r.revoked_at, "expires_at": r.expires_at, "description": r.description,
        "active": r.usable(time.time()),
    }


def audit_trail(rt: Runtime, req: Request, ex: Exchange) -> AuditTrail:
    """Who is acting: the admin key's holder (or `oidc:<sub>`, signed in to the UI with an ID
    token), from the client's address, in this request (the gateway's request id, as in the
    access log)."""
    client = req.scope.get("client")
    actor = ADMIN_API_ACTOR
    if rt.ui is not None and key_from_headers(req.headers) is None:
        session = rt.ui.verify(cookie_value(req.headers.get("cookie")))
        if session is not None and session["s"]:
            actor = "oidc:" + session["s"]
    return AuditTrail(rt.store, actor, str(client[0]) if client else None, ex.gateway_id)


def directory_admin(rt: Runtime, req: Request, ex: Exchange) -> DirectoryAdmin:
    assert rt.access is not None
    return DirectoryAdmin(rt.cfg, rt.access.store, rt.access.model_names, audit_trail(rt, req, ex))


async def create_key(rt: Runtime, req: Request, ex: Exchange) -> None:
    require_admin(rt, req)
    body = convert(decode_json_object(await req.json_body(rt.cfg.server.max_body_bytes)), CreateKey)
    admin = directory_admin(rt, req, ex)
    await admin.require_consumer(body.consumer)
    key = new_key()
    expires = time.time() + body.expires_in_seconds if body.expires_in_seconds else None
    record = rt.hasher.record(body.consumer, key, body.description, expires)
    await rt.store.add_key(record)
    rt.keys.forget(record.key_hash)
    await admin.record("key.create", record.id, {"consumer": record.consumer, "description": record.description,
                                                  "expires_at": record.expires_at})
    await send_json(req.send, 201, {**key_view(record), "key": key}, header_list(ex.request_id))


async def list_keys(rt: Runtime, req: Request, ex: Exchange) -> None:
    require_admin(rt, req)
    consumer = req.query.get("consumer")
    records = await rt.store.list_keys(consumer)
    await send_json(req.send, 200, {"data": [key_view(r) for r in records]}, header_list(ex.request_id))


async def revoke_key(rt: Runtime, req: Request, ex: Exchange) -> None:
    require_admin(rt, req)
    record = await rt.store.revoke_key(req.path_params["key_id"], time.time())
    if record is None:
        raise NotFound(f"No key with id '{req.path_params['key_id']}'.", code="key_not_found")
    rt.keys.forget(record.key_hash)
    await audit_trail(rt, req, ex).record("key.revoke", record.id, {"consumer": record.consumer})
    await send_json(req.send, 200, key_view(record), header_list(ex.request_id))


async def show_key(rt: Runtime, req: Request, ex: Exchange) -> None:
    require_admin(rt, req)
    record = await rt.store.key_by_id(req.path_params["key_id"])
    if record is None:
        raise NotFound(f"No key with id '{req.path_params['key_id']}'.", code="key_not_found")
    await send_json(req.send, 200, key_view(record), header_list(ex.request_id))


AUDIT_FILTERS = ("since", "until", "actor", "action", "target", "kind", "request_id", "limit")


async def audit_log(rt: Runtime, req: Request, ex: Exchange) -> None:
    """GET /admin/audit: admin actions and guardrail events, newest first, filtered by time, actor,
    action (`key.revoke`, or a family: `key.*`), target, kind (`admin` or `guardrail`) and request id."""
    require_admin(rt, req)
    params = req.query
    unknown = sorted(set(params) - set(AUDIT_FILTERS))
    if unknown:
        raise InvalidRequest(f"Unknown filter '{unknown[0][:40]}' (known: {', '.join(AUDIT_FILTERS)}).",
                             param=unknown[0][:40])
    now = time.time()
    try:
        since = parse_time(params.get("since") or "7d", "since", now)
        until = parse_time(params["until"], "until", now) if params.get("until") else None
    except UsageQueryError as e:
        raise InvalidRequest(str(e) + ".", param=str(e).split(":", 1)[0]) from None
    raw_limit = params.get("limit") or "100"
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise InvalidRequest(f"'limit' must be a whole number from 1 to {MAX_LIMIT}.", param="limit")
    kind = params.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise InvalidRequest(f"'kind' must be one of: {', '.join(KINDS)}.", param="kind")
    entries = await AuditStore(rt.store).query(since=since, until=until, actor=params.get("actor") or None,
                                               action=params.get("action") or None,
                                               target=params.get("target") or None, kind=kind,
                                               request_id=params.get("request_id") or None, limit=int(raw_limit))
    await send_json(req.send, 200, {"data": [e.view() for e in entries]}, header_list(ex.request_id))


class RotateKey(msgspec.Struct, forbid_unknown_fields=True):
    grace_seconds: float = 3600.0  # the old key keeps working this long (0: stops at once)
    description: str | None = None


async def rotate_key(rt: Runtime, req: Request, ex: Exchange) -> None:
    """A new key for the same consumer; the old one expires after the grace period."""
    require_admin(rt, req)
    body = RotateKey()
    if req.headers.get("content-length", "0") != "0" or "transfer-encoding" in req.headers:
        body = convert(decode_json_object(await req.json_body(rt.cfg.server.max_body_bytes)), RotateKey)
    if body.grace_seconds < 0:
        raise InvalidRequest("'grace_seconds' must not be negative.", param="grace_seconds")
    admin = directory_admin(rt, req, ex)
    new, key, old = await rotate(rt.store, rt.hasher, req.path_params["key_id"], body.grace_seconds,
                                 body.description, admin.require_consumer)
    rt.keys.forget(old.key_hash)
    await admin.record("key.rotate", old.id, {"consumer": old.consumer, "new_key_id": new.id,
                                               "old_key_expires_at": old.expires_at})
    await send_json(req.send, 201, {**key_view(new), "key": key, "replaces": old.id,
                                    "old_key_expires_at": old.expires_at}, header_list(ex.request_id))



async def reload_config(rt: Runtime, req: Request, ex: Exchange) -> None:
    """POST /admin/reload: read the config file again and make it live (gatehouse/reload.py);
    a bad file is answered 400 naming the field, and the live config keeps serving."""
    require_admin(rt, req)
    if rt.reloader is None:
        raise Conflict("This gateway was started without a config file (--config): there is nothing to reload.",
                       code="no_config_file")
    try:
        new = await rt.reloader.reload("admin API")
    except ReloadRejected as e:
        await audit_trail(rt, req, ex).record("config.reload_rejected", rt.config_sha256[:12],
                                              {"generation": rt.generation, "error": e.message})
        raise
    await audit_trail(new, req, ex).record("config.reload", new.config_sha256[:12], {"generation": new.generation})
    ask_reload_broadcast(new.data_dir / "run")  # `serve --workers N`: the other workers reload too
    await send_json(req.send, 200, {"status": "reloaded", "generation": new.generation,
                                    "sha256": new.config_sha256, "models": len(new.models)},
                    header_list(ex.request_id))
