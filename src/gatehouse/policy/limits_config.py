"""Effective limits of a consumer, and the validation shared by config files and the admin API.

A consumer's limits are its group's allowance overlaid with its own overrides, computed once
when the directory is (re)loaded and carried on every Principal, so the hot path only reads
them. Each metered field also names the pool it is counted in: the consumer's own, or the
group's when the group shares one allowance (`limit_scope: group`). An override is personal:
it is always counted on the consumer's own pool.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import urlsplit

from gatehouse.config import Config, ConfigError, ConsumerConfig, GroupConfig, LimitSettings
from gatehouse.policy.principal import METERED, Limits

LIMIT_FIELDS = ("tokens_per_minute", "requests_per_minute", "max_concurrent", "max_tokens",
                "budget_usd_per_day", "budget_usd_per_month")
# Asymmetric algorithms only: a JWKS is public, so an HMAC secret cannot come from one.
JWT_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                            "ES512", "EdDSA"})
# Group and consumer names: a letter or digit, then letters, digits and . _ @ - (64 at most).
# No ':' - identities from other authenticators carry one (`jwt:<subject>`), so no name
# made here can ever be one of them; no '/', spaces or control characters - names appear in
# URLs, log lines, metric labels and limit keys.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
NAME_RULE = ("1-64 characters: letters, digits and . _ @ -, starting with a letter or digit "
             f"(pattern {NAME_PATTERN})")
_NAME = re.compile(NAME_PATTERN)
_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,30}:")  # ends in ':', which no made name has


def _value(v: Any) -> Any:
    return None if v == "unlimited" else v


def effective_limits(consumer_name: str, group_name: str | None, group: GroupConfig | None,
                     consumer: ConsumerConfig | LimitSettings | None) -> Limits | None:
    """The consumer's limits, or None when nothing at all is limited (the fast path)."""
    values: dict[str, int | float | None] = {}
    personal: set[str] = set()
    for f in LIMIT_FIELDS:
        own = getattr(consumer, f) if consumer is not None else None
        if own is not None:
            values[f] = _value(own)
            personal.add(f)
        else:
            values[f] = _value(getattr(group, f)) if group is not None else None
    if all(v is None for v in values.values()):
        return None
    shared = group is not None and group.limit_scope == "group" and group_name is not None
    pools = tuple(f"c:{consumer_name}" if (f in personal or not shared) else f"g:{group_name}"
                  for f in METERED)
    return Limits(**values, pools=pools)  # type: ignore[arg-type]


# ---- validation ---------------------------------------------------------------------------


def valid_name(name: object) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def check_name(name: object, path: str) -> None:
    if not valid_name(name):
        raise ConfigError(f"{path}: invalid name {_shown(name)}: names are {NAME_RULE}")


def _shown(name: object) -> str:
    text = repr(name) if isinstance(name, str) else type(name).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def check_limit_settings(s: LimitSettings, path: str) -> None:
    for f in LIMIT_FIELDS:
        v = getattr(s, f)
        if v is None or v == "unlimited":
            continue
        if v <= 0:
            raise ConfigError(f"{path}.{f}: must be positive, or 'unlimited'")


def check_access_config(cfg: Config) -> None:
    for name, g in cfg.groups.items():
        check_name(name, "groups")
        check_limit_settings(g, f"groups.{name}")
    admin = cfg.admin.key or None
    admin_sha = hashlib.sha256(admin.encode()).hexdigest() if admin else None
    for name, c in cfg.consumers.items():
        check_name(name, "consumers")
        check_limit_settings(c, f"consumers.{name}")
        for k, key in enumerate(c.keys):
            if admin and (key == admin or key == f"sha256:{admin_sha}"):
                raise ConfigError(f"consumers.{name}.keys[{k}]: a consumer key must differ from admin.key")
    lim = cfg.limits
    for f in ("store_timeout_seconds", "breaker_reset_seconds", "lease_seconds"):
        if getattr(lim, f) <= 0:
            raise ConfigError(f"limits.{f}: must be positive")
    for f in ("breaker_failures", "replicas", "default_reserve_tokens"):
        if getattr(lim, f) < 1:
            raise ConfigError(f"limits.{f}: must be at least 1")
    if cfg.store.redis_url and not cfg.store.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("store.redis_url: must start with redis://, rediss:// or unix://")
    jwt = cfg.auth.jwt
    if (cfg.ui.admin_values or cfg.ui.read_only_values) and jwt is None:
        raise ConfigError("ui.admin_values / ui.read_only_values: ID-token sign-in needs auth.jwt (issuer, "
                          "audience, jwks_url)")
    if not cfg.ui.role_claim:
        raise ConfigError("ui.role_claim: must not be empty")
    if jwt is not None:
        if urlsplit(jwt.jwks_url).scheme not in ("http", "https"):
            raise ConfigError("auth.jwt.jwks_url: must be an http(s) URL")
        if not jwt.algorithms:
            raise ConfigError("auth.jwt.algorithms: list at least one algorithm")
        for i, alg in enumerate(jwt.algorithms):
            if alg not in JWT_ALGORITHMS:
                raise ConfigError(f"auth.jwt.algorithms[{i}]: '{alg}' is not allowed (use one of "
                                  f"{', '.join(sorted(JWT_ALGORITHMS))})")
        if not jwt.issuer:
            raise ConfigError("auth.jwt.issuer: must not be empty")
        if not jwt.audience:
            raise ConfigError("auth.jwt.audience: must not be empty")
        if jwt.consumer_prefix and not _PREFIX.fullmatch(jwt.consumer_prefix):
            raise ConfigError("auth.jwt.consumer_prefix: must be '' (subjects are key consumers' names, on purpose) "
                              "or 1-32 letters, digits, . _ @ - ending in ':' (default 'jwt:')")
