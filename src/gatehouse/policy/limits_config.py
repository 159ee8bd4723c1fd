"""Effective limits of a consumer, and the name and limit rules shared by config files
(config/check.py) and the admin API.

A consumer's limits are its group's allowance overlaid with its own overrides, computed once
when the directory is (re)loaded and carried on every Principal, so the hot path only reads
them. Each metered field also names the pool it is counted in: the consumer's own, or the
group's when the group shares one allowance (`limit_scope: group`). An override is personal:
it is always counted on the consumer's own pool.
"""
from __future__ import annotations

import re
from typing import Any

from gatehouse.config.schema import ConfigError, ConsumerConfig, GroupConfig, LimitSettings
from gatehouse.policy.principal import METERED, Limits

LIMIT_FIELDS = ("tokens_per_minute", "requests_per_minute", "max_concurrent", "max_tokens",
                "budget_usd_per_day", "budget_usd_per_month")
# Group and consumer names: a letter or digit, then letters, digits and . _ @ - (64 at most).
# No ':' - identities from other authenticators carry one (`jwt:<subject>`), so no name
# made here can ever be one of them; no '/', spaces or control characters - names appear in
# URLs, log lines, metric labels and limit keys.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
NAME_RULE = ("1-64 characters: letters, digits and . _ @ -, starting with a letter or digit "
             f"(pattern {NAME_PATTERN})")
_NAME = re.compile(NAME_PATTERN)


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
