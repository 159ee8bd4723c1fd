"""Admin API. Every route requires the admin key; without `admin.key` configured, all are denied."""
from __future__ import annotations

import hmac
import time
from typing import Any

import msgspec

from gatehouse.api.http import Request, header_list, send_json
from gatehouse.errors import AuthenticationFailed, InvalidRequest, NotFound, PermissionDenied
from gatehouse.policy.auth import key_from_headers
from gatehouse.policy.key_rotation import rotate
from gatehouse.policy.keys import new_key
from gatehouse.policy.pipeline import Exchange
from gatehouse.runtime import Runtime
from gatehouse.store.protocols import KeyRecord
from gatehouse.wire.common import convert, decode_json_object


class CreateKey(msgspec.Struct, forbid_unknown_fields=True):
    consumer: str
    description: str | None = None
    expires_in_seconds: float | None = None


def require_admin(rt: Runtime, req: Request) -> None:
    if rt.admin_key is None:
        raise PermissionDenied("The admin API is disabled: set admin.key in the configuration.",
                               code="admin_disabled")
    given = key_from_headers(req.headers) or ""
    if not hmac.compare_digest(given.encode(), rt.admin_key.encode()):
        raise AuthenticationFailed("Invalid admin key.", code="invalid_admin_key")


def key_view(r: KeyRecord) -> dict[str, Any]:
    return {
        "id": r.id, "consumer": r.consumer, "prefix": r.prefix, "created_at": r.created_at,
        "revoked_at": r.revoked_at, "expires_at": r.expires_at, "description": r.description,
        "active": r.usable(time.time()),
    }


async def create_key(rt: Runtime, req: Request, ex: Exchange) -> None:
    require_admin(rt, req)
    body = convert(decode_json_object(await req.json_body(rt.cfg.server.max_body_bytes)), CreateKey)
    key = new_key()
    expires = time.time() + body.expires_in_seconds if body.expires_in_seconds else None
    record = rt.hasher.record(body.consumer, key, body.description, expires)
    await rt.store.add_key(record)
    rt.auth.forget(record.key_hash)
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
    rt.auth.forget(record.key_hash)
    await send_json(req.send, 200, key_view(record), header_list(ex.request_id))


async def show_key(rt: Runtime, req: Request, ex: Exchange) -> None:
    require_admin(rt, req)
    record = await rt.store.key_by_id(req.path_params["key_id"])
    if record is None:
        raise NotFound(f"No key with id '{req.path_params['key_id']}'.", code="key_not_found")
    await send_json(req.send, 200, key_view(record), header_list(ex.request_id))


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
    new, key, old = await rotate(rt.store, rt.hasher, req.path_params["key_id"], body.grace_seconds,
                                 body.description)
    rt.auth.forget(old.key_hash)
    await send_json(req.send, 201, {**key_view(new), "key": key, "replaces": old.id,
                                    "old_key_expires_at": old.expires_at}, header_list(ex.request_id))

