"""What a limiter checks (meters), what it answers (outcomes), and the calendar windows.

Three kinds of meter, all admitted or refused together in one atomic step:

- BUCKET: a token bucket holding `limit` units that refills continuously at `limit` per
  minute (requests or tokens per minute). There is no window edge at which twice the limit
  could pass. A request reserves `cost`; settling gives back what it did not use, or takes
  what it used beyond the reservation (the bucket can go into debt).
- LEASE: at most `limit` requests at once; each holds a slot (with a lease, so a replica
  that dies frees its slots) until it settles.
- DAY / MONTH: spending (nano-USD) in the current UTC day or calendar month, reserved at
  admission and corrected at settlement.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple, Protocol

BUCKET, LEASE, DAY, MONTH = "b", "c", "d", "m"
NANO = 1_000_000_000  # budgets are counted in integer nano-USD: exact sums, no float drift


class Meter(NamedTuple):
    dim: str  # requests | tokens | concurrent | usd_day | usd_month
    kind: str
    key: str  # the pool's key; DAY/MONTH keys get the window id appended
    limit: int
    cost: int


class Outcome(NamedTuple):
    ok: bool
    denied: int  # index of the meter that refused, -1 when admitted
    retry_after: float  # seconds until the refusing meter could admit
    remaining: list[int]  # per meter, after this admission
    reset: list[float]  # per meter: seconds until full again / until the window ends
    keys: list[str]  # per meter: the key to settle against (window keys resolved)
    backend: str  # "redis" or "local": where the reservation lives
    limits: list[int]  # per meter, the limit applied (a share of it while Redis is out)


class Refund(NamedTuple):
    kind: str
    key: str
    limit: int
    amount: int  # reserved minus used: positive gives back, negative takes more


class Limiter(Protocol):
    async def admit(self, meters: list[Meter], member: str, lease_seconds: float) -> Outcome: ...
    async def settle(self, refunds: list[Refund], member: str) -> None: ...


def window(kind: str, now: float) -> tuple[str, float]:
    """(window id, end time) of the UTC day or calendar month containing `now`.
    Must agree with `window()` in limiter_lua.py: Redis computes the same ids."""
    day = int(now // 86400)
    if kind == DAY:
        return f"d{day}", (day + 1) * 86400.0
    d = datetime.fromtimestamp(now, UTC)
    ny, nm = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return f"m{d.year:04d}{d.month:02d}", datetime(ny, nm, 1, tzinfo=UTC).timestamp()
