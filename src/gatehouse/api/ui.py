"""The admin web UI: static pages at /ui, sign-in with the admin key, and the few admin routes the
pages need beyond the admin API (models, a playground key).

Every UI response carries a strict Content-Security-Policy: scripts and styles only from /ui
itself, no inline script, no framing, no requests to other hosts.
"""
from __future__ import annotations

import hmac
import time
from functools import cache
from importlib import resources
from typing import Any

import msgspec

from gatehouse.api.admin import key_view, require_admin
from gatehouse.api.http import Request, header_list, send_bytes, send_json
from gatehouse.errors import AuthenticationFailed, Conflict, NotFound, PermissionDenied, RateLimited
from gatehouse.gateway.exchange import Exchange
from gatehouse.policy.keys import new_key
from gatehouse.policy.ui_session import ROLE_ADMIN, ROLE_READ_ONLY, cookie_value
from gatehouse.runtime import Runtime
from gatehouse.wire.common import convert, decode_json_object

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_TYPES = {".html": b"text/html; charset=utf-8", ".js": b"text/javascript; charset=utf-8",
          ".css": b"text/css; charset=utf-8", ".svg": b"image/svg+xml"}
PLAYGROUND = "ui-playground"  # the group and consumer the playground's short-lived keys belong to
PLAYGROUND_KEY_SECONDS = 3600.0


@cache
def _asset(name: str) -> tuple[bytes, bytes] | None:
    """(content type, bytes) of a shipped UI file; read once, then served from memory."""
    suffix = name[name.rfind("."):] if "." in name else ""
    if suffix not in _TYPES or "/" in name or name.startswith("."):
        return None
    path = resources.files("gatehouse") / "web" / name
    if not path.is_file():
        return None
    return _TYPES[suffix], path.read_bytes()


def _security_headers(request_id: str, extra: dict[str, str] | None = None) -> list[tuple[bytes, bytes]]:
    return header_list(request_id, {
        "content-security-policy": CSP, "x-content-type-options": "nosniff", "x-frame-options": "DENY",
        "referrer-policy": "no-referrer", "cache-control": "no-store", **(extra or {})})


def _ui(rt: Runtime) -> Any:
    if rt.ui is None:
        raise NotFound("The admin UI is off (ui.enabled: false, or no admin.key).", code="ui_disabled")
    return rt.ui


def _secure(req: Request) -> bool:
    return req.scope.get("scheme") == "https" or req.headers.get("x-forwarded-proto") == "https"


async def page(rt: Runtime, req: Request, ex: Exchange) -> None:
    _ui(rt)
    name = req.path_params.get("asset") or "index.html"
    found = _asset(name)
    if found is None:
        raise NotFound(f"No UI file '{name[:60]}'.", code="unknown_route")
    content_type, body = found
    await send_bytes(req.send, 200, body, _security_headers(ex.request_id), content_type)


class SignIn(msgspec.Struct, forbid_unknown_fields=True):
    key: str | None = None  # the admin key, or
    token: str | None = None  # an ID token from auth.jwt's issuer (ui.admin_values / ui.read_only_values)


def _token_sign_in(rt: Runtime) -> bool:
    return rt.jwt is not None and bool(rt.cfg.ui.admin_values or rt.cfg.ui.read_only_values)


async def _role_of_token(rt: Runtime, token: str) -> tuple[str, str | None]:
    """The UI role of a verified ID token (admin or read_only; PermissionDenied when none maps)
    and its subject, when it has a usable one, for the audit log."""
    from gatehouse.policy.jwt_auth import claim_values

    if not _token_sign_in(rt):
        raise AuthenticationFailed("Sign-in with an ID token is not configured (auth.jwt and ui.admin_values or "
                                   "ui.read_only_values).", code="ui_token_sign_in_off")
    assert rt.jwt is not None
    claims, _ = await rt.jwt.verify(token)
    values = set(claim_values(claims, rt.cfg.ui.role_claim))
    sub = claims.get(rt.jwt.cfg.consumer_claim)
    subject = sub if isinstance(sub, str) and 0 < len(sub) <= 128 and sub.isprintable() else None
    if values.intersection(rt.cfg.ui.admin_values):
        return ROLE_ADMIN, subject
    if values.intersection(rt.cfg.ui.read_only_values):
        return ROLE_READ_ONLY, subject
    raise PermissionDenied(f"The ID token's '{rt.cfg.ui.role_claim}' claim maps to no admin UI role.",
                           code="no_ui_role")


async def login_options(rt: Runtime, req: Request, ex: Exchange) -> None:
    """How one may sign in: the admin key, and an ID token when that is configured."""
    _ui(rt)
    await send_json(req.send, 200, {"methods": ["key", "token"] if _token_sign_in(rt) else ["key"]},
                    _security_headers(ex.request_id))


async def login(rt: Runtime, req: Request, ex: Exchange) -> None:
    ui = _ui(rt)
    client = (req.scope.get("client") or ("?",))[0]
    if not ui.allowed(client):
        raise RateLimited("Too many failed sign-ins; wait a minute.", code="ui_sign_in_throttled",
                          headers={"retry-after": "60"})
    body = convert(decode_json_object(await req.json_body(16384)), SignIn)
    assert rt.admin_key is not None  # the UI is only on with an admin key
    subject: str | None = None
    if body.token is not None:
        try:
            role, subject = await _role_of_token(rt, body.token)
        except (AuthenticationFailed, PermissionDenied):
            ui.failed(client)
            raise
    elif body.key is not None and hmac.compare_digest(body.key.encode(), rt.admin_key.encode()):
        role = ROLE_ADMIN
    else:
        ui.failed(client)
        raise AuthenticationFailed("Invalid admin key.", code="invalid_admin_key")
    cookie = ui.issue(role, subject=subject)
    session = ui.verify(cookie)
    await send_json(req.send, 200, {"role": role, "csrf": ui.csrf(session)},
                    _security_headers(ex.request_id, {"set-cookie": ui.set_cookie(cookie, _secure(req))}))


async def logout(rt: Runtime, req: Request, ex: Exchange) -> None:
    ui = _ui(rt)
    await send_json(req.send, 200, {"signed_in": False},
                    _security_headers(ex.request_id, {"set-cookie": ui.clear_cookie(_secure(req))}))


async def session(rt: Runtime, req: Request, ex: Exchange) -> None:
    """The signed-in role and the CSRF token for this session; 401 when not signed in."""
    ui = _ui(rt)
    current = ui.verify(cookie_value(req.headers.get("cookie")))
    if current is None:
        raise AuthenticationFailed("Not signed in.", code="ui_not_signed_in")
    await send_json(req.send, 200, {"role": current["r"], "csrf": ui.csrf(current)},
                    _security_headers(ex.request_id))


async def models(rt: Runtime, req: Request, ex: Exchange) -> None:
    """Public models, their deployments (provider, type, upstream model, prices), never hosts or keys."""
    require_admin(rt, req)
    out = []
    for m in rt.cfg.models:
        deps = [{"provider": d.provider, "type": rt.cfg.providers[d.provider].type if d.provider in rt.cfg.providers
                 else "", "model": d.model, "weight": d.weight, "input_per_mtok": d.input_per_mtok,
                 "output_per_mtok": d.output_per_mtok, "gpu_cost_per_hour": d.gpu_cost_per_hour}
                for d in m.deployments]
        out.append({"name": m.name, "private": m.private, "description": m.description,
                    "embeddings": m.embeddings, "deployments": deps})
    await send_json(req.send, 200, {"data": out}, header_list(ex.request_id))


async def playground_key(rt: Runtime, req: Request, ex: Exchange) -> None:
    """A key for the playground, valid one hour, for the `ui-playground` consumer (all models).

    The page keeps it in memory only; its requests are metered like any other consumer's.
    """
    require_admin(rt, req)
    from gatehouse.policy.directory_admin import DirectoryAdmin

    admin = DirectoryAdmin(rt.cfg, rt.access.store, rt.access.model_names)
    for create, body in ((admin.create_group, {"name": PLAYGROUND, "models": ["*"]}),
                         (admin.create_consumer, {"name": PLAYGROUND, "group": PLAYGROUND})):
        try:
            await create(body)
        except Conflict:  # already there (store or config): use it as it is
            pass
    await rt.access.reload()
    key = new_key()
    record = rt.hasher.record(PLAYGROUND, key, "admin UI playground", time.time() + PLAYGROUND_KEY_SECONDS)
    await rt.store.add_key(record)
    await send_json(req.send, 201, {**key_view(record), "key": key}, header_list(ex.request_id))
