"""Which models a consumer may use. Glob patterns are expanded once, at load time."""
from __future__ import annotations

from fnmatch import fnmatchcase

from gatehouse.config import Config


def expand(patterns: list[str], model_names: list[str]) -> frozenset[str] | None:
    """The set of model names matched by the patterns; None when '*' allows everything."""
    if "*" in patterns:
        return None
    return frozenset(n for n in model_names if any(fnmatchcase(n, p) for p in patterns))


def consumer_allowed(cfg: Config, consumer: str, model_names: list[str]) -> tuple[str | None, frozenset[str] | None]:
    """(group, allowed models) for a consumer; consumers unknown to config get no group and
    every model (a key made with `gatehouse keys create` on a laptop)."""
    c = cfg.consumers.get(consumer)
    if c is None:
        return None, None
    allowed = expand(cfg.groups[c.group].models, model_names) if c.group else None
    if c.models is not None:
        own = expand(c.models, model_names)
        if allowed is None:
            allowed = own
        elif own is not None:
            allowed = allowed & own
    return c.group, allowed
