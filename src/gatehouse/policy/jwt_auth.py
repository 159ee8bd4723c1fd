"""Bearer JWTs from an OIDC provider for inference traffic (auth.jwt).

A token is accepted when its signature verifies with a key from the JWKS URL under an
algorithm on the allow-list (never `none`, never HMAC: a JWKS is public), and its issuer,
audience and expiry are right. A claim (`group_claim`, dotted paths allowed) maps to the
group; the subject (`consumer_claim`) names the consumer, counted in its own pools.

The consumer is `consumer_prefix` + subject (`jwt:alice`): a token whose subject is `alice`
is not the key consumer `alice` - it neither spends her limits nor sees her usage - since
made names cannot contain ':'. Only `consumer_prefix: ""` maps the two on purpose.

Keys are cached. Stale keys (older than `jwks_refresh_seconds`) are refreshed in the
background while the cached ones keep serving; a token with an unknown `kid` triggers a
refetch at most every `jwks_cooldown_seconds`, so rotation at the provider is picked up at
once and a flood of bogus kids cannot hammer it.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import aiohttp
import jwt
from jwt import PyJWK

from gatehouse.config import JwtConfig
from gatehouse.errors import AuthenticationFailed, PermissionDenied, ServiceUnavailable
from gatehouse.policy.directory import AccessControl
from gatehouse.policy.principal import Principal
from gatehouse.upstream.client import HttpPool

log = logging.getLogger("gatehouse.jwt")

INVALID_TOKEN = "Invalid bearer token: its signature, algorithm, issuer or audience is not accepted."
EXPIRED_TOKEN = "The bearer token has expired."
# A subject becomes part of the consumer's identity (ledger, limit keys, logs): bounded, and
# without control characters.
_SUBJECT = re.compile(r"[^\x00-\x1f\x7f]{1,128}")


class JwksCache:
    def __init__(self, cfg: JwtConfig, http: HttpPool):
        self.cfg = cfg
        self.http = http
        self.keys: dict[str | None, Any] = {}  # kid -> (public key, jwk alg or None)
        self.fetched_at = 0.0  # monotonic time of the last successful fetch
        self.tried_at = float("-inf")
        self._inflight: asyncio.Task[Any] | None = None

    async def key(self, kid: str | None) -> tuple[Any, str | None] | None:
        now = time.monotonic()
        if not self.keys:
            await self._refresh()
        elif now - self.fetched_at > self.cfg.jwks_refresh_seconds:
            self._refresh_soon()  # keep serving with the cached keys meanwhile
        found = self._find(kid)
        if found is None and now - self.tried_at >= self.cfg.jwks_cooldown_seconds:
            await self._refresh()
            found = self._find(kid)
        return found  # type: ignore[no-any-return]

    def _find(self, kid: str | None) -> Any:
        if kid is None:  # a token without kid is fine when the set has exactly one key
            return next(iter(self.keys.values())) if len(self.keys) == 1 else None
        return self.keys.get(kid)

    def _refresh_soon(self) -> None:
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.get_running_loop().create_task(self._fetch())

    async def _refresh(self) -> None:
        self._refresh_soon()
        assert self._inflight is not None
        await asyncio.shield(self._inflight)

    async def _fetch(self) -> None:
        self.tried_at = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=self.cfg.jwks_timeout_seconds)
        try:
            async with self.http.session.get(self.cfg.jwks_url, timeout=timeout) as resp:
                if resp.status != 200:
                    raise ValueError(f"status {resp.status}")
                data = await resp.json(content_type=None)
            keys = _parse_jwks(data)
        except Exception as e:  # keep the keys we have; the message names no URL
            log.error("cannot fetch the JWKS for auth.jwt (%s); keeping %d cached keys",
                      type(e).__name__, len(self.keys))
            return
        self.keys = keys
        self.fetched_at = time.monotonic()


def _parse_jwks(data: Any) -> dict[str | None, tuple[Any, str | None]]:
    """kid -> (public key, the alg the JWK pins or None). Keys not for signatures, or of a
    type this PyJWT cannot use, are skipped."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys: dict[str | None, tuple[Any, str | None]] = {}
    for d in data["keys"]:
        if not isinstance(d, dict) or d.get("use", "sig") != "sig":
            continue
        try:
            jwk = PyJWK(d)
        except jwt.PyJWKError:
            continue
        keys[d.get("kid")] = (jwk.key, d.get("alg"))
    return keys


def _claim(claims: dict[str, Any], path: str) -> Any:
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def claim_values(claims: dict[str, Any], path: str) -> list[str]:
    """The string values of a claim that holds a string or a list of strings."""
    raw = _claim(claims, path)
    return [raw] if isinstance(raw, str) else [v for v in raw if isinstance(v, str)] \
        if isinstance(raw, list) else []


def looks_like_jwt(credential: str) -> bool:
    return credential.startswith("eyJ") and credential.count(".") == 2


class BearerJwt:
    """An Authenticator for credentials shaped like a JWT (`eyJ...` with three parts); it goes
    before API keys in the chain. Also verifies ID tokens for the admin UI's sign-in."""

    def __init__(self, cfg: JwtConfig, http: HttpPool, access: AccessControl):
        self.cfg = cfg
        self.access = access
        self.jwks = JwksCache(cfg, http)
        self.algorithms = frozenset(cfg.algorithms)
        self.audience = cfg.audience
        self.prefix = cfg.consumer_prefix

    async def verify(self, token: str) -> tuple[dict[str, Any], str | None]:
        """The claims (and key id) of a token whose signature, algorithm, issuer, audience and
        expiry are right; AuthenticationFailed (or ServiceUnavailable without keys) otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise AuthenticationFailed(INVALID_TOKEN, code="invalid_token") from None
        alg = header.get("alg")
        if alg not in self.algorithms:  # `none`, HMAC and anything not allowed stop here
            raise AuthenticationFailed(INVALID_TOKEN, code="invalid_token")
        kid = header.get("kid")
        found = await self.jwks.key(kid if isinstance(kid, str) else None)
        if found is None:
            if not self.jwks.keys:
                raise ServiceUnavailable("Bearer tokens cannot be verified right now (the identity "
                                         "provider's keys are unavailable); retry shortly.", code="jwks_unavailable")
            raise AuthenticationFailed(INVALID_TOKEN, code="invalid_token")
        key, key_alg = found
        if key_alg is not None and key_alg != alg:
            raise AuthenticationFailed(INVALID_TOKEN, code="invalid_token")
        try:
            claims = jwt.decode(
                token, key=key, algorithms=[alg], audience=self.audience, issuer=self.cfg.issuer,
                leeway=self.cfg.leeway_seconds,
                options={"require": ["exp", "iss", "aud"], "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed(EXPIRED_TOKEN, code="token_expired") from None
        except Exception:  # any other failure - signature, claims, key type - looks the same
            raise AuthenticationFailed(INVALID_TOKEN, code="invalid_token") from None
        return claims, kid if isinstance(kid, str) else None

    async def authenticate(self, credential: str) -> Principal | None:
        """None for a credential not shaped like a JWT (an API key: the next authenticator's)."""
        if not looks_like_jwt(credential):
            return None
        return await self.principal(credential)

    async def principal(self, token: str) -> Principal:
        claims, kid = await self.verify(token)
        subject = _claim(claims, self.cfg.consumer_claim)
        if not isinstance(subject, str) or not subject:
            raise AuthenticationFailed(f"The bearer token has no '{self.cfg.consumer_claim}' claim.",
                                       code="invalid_token")
        if not _SUBJECT.fullmatch(subject):
            raise AuthenticationFailed(f"The bearer token's '{self.cfg.consumer_claim}' claim is longer than 128 "
                                       "characters or holds control characters.", code="invalid_token")
        group = self._group(claims)
        identity = self.prefix + subject
        principal = self.access.current.principal_in_group(identity, group, f"jwt:{kid or '-'}") if group else None
        if principal is None:
            raise PermissionDenied("The bearer token maps to no group of this gateway.", code="no_group")
        return principal

    def _group(self, claims: dict[str, Any]) -> str | None:
        values = claim_values(claims, self.cfg.group_claim)
        if self.cfg.groups:
            for claim_value, group in self.cfg.groups.items():
                if claim_value in values:
                    return group
        else:  # no mapping: claim values are group names
            groups = self.access.current.groups
            for v in values:
                if v in groups:
                    return v
        return self.cfg.default_group
