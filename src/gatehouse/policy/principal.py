"""Who is calling, as every authenticator reports it: a Principal and the Limits it carries.

Authenticators (policy/auth.py's chain: API keys in key_auth.py, bearer JWTs in jwt_auth.py)
yield a Principal; the directory (directory.py) builds it, with the consumer's group, allowed
models and effective limits computed when the directory loads, so the hot path only reads
them. This module imports nothing from gatehouse, so every layer may use it.
"""
from __future__ import annotations

from msgspec import Struct

# Fields counted in a pool (max_tokens is a per-request cap, not a counter).
METERED = ("requests_per_minute", "tokens_per_minute", "max_concurrent", "budget_usd_per_day",
           "budget_usd_per_month")


class Limits(Struct, frozen=True):
    """What one consumer may use. `pools[i]` is where METERED[i] is counted."""

    tokens_per_minute: int | None = None
    requests_per_minute: int | None = None
    max_concurrent: int | None = None
    max_tokens: int | None = None
    budget_usd_per_day: float | None = None
    budget_usd_per_month: float | None = None
    pools: tuple[str, ...] = ()

    @property
    def metered(self) -> bool:
        return any(getattr(self, f) is not None for f in METERED)


class Principal(Struct, frozen=True):
    consumer: str
    group: str | None
    key_id: str
    allowed: frozenset[str] | None  # None = every model
    limits: Limits | None = None  # computed when the directory loads; None = unlimited
