"""Redis limiter: every admission and settlement is one EVALSHA of an atomic Lua script.

The client times out fast (`limits.store_timeout_seconds`) and retries once at most, which
is safe: each admission has an id, and the scripts act once per id (limiter_lua.py). What to
do when Redis does not answer is decided one level up (limiter_shared.py).
"""
from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gatehouse.store.limiter_lua import ADMIT, CANCEL, HEARTBEAT, RENEW, SETTLE
from gatehouse.store.limiter_types import Meter, Outcome, Refund

PREFIX = "gh:lim:"
MARKER = PREFIX + "adm:"  # + admission id: the admission's marker (limiter_lua.py)
REPLICAS_KEY = "gh:replicas"


class RedisLimiter:
    def __init__(self, url: str, timeout: float):
        # One immediate retry on a broken connection (Redis restarted under a pooled
        # connection); the caller bounds the total time.
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True,
            retry=Retry(NoBackoff(), 1), health_check_interval=0, max_connections=256,
        )
        self._admit = self.client.register_script(ADMIT)
        self._settle = self.client.register_script(SETTLE)
        self._cancel = self.client.register_script(CANCEL)
        self._renew = self.client.register_script(RENEW)
        self._heartbeat = self.client.register_script(HEARTBEAT)

    async def admit(self, meters: list[Meter], member: str, lease_seconds: float,
                    marker_ms: int = 120_000) -> Outcome:
        args: list[str | int | float] = [member, lease_seconds, marker_ms]
        for m in meters:
            args += (m.kind, m.limit, m.cost)
        raw = await self._admit(keys=[*(PREFIX + m.key for m in meters), MARKER + member], args=args)
        denied, retry_ms = int(raw[0]), int(raw[1])
        if denied < 0:  # cancelled: only a call nobody waits for any more can see this
            raise TimeoutError("admission cancelled")
        n = len(meters)
        remaining = [int(raw[2 + 3 * i]) for i in range(n)]
        reset = [int(raw[3 + 3 * i]) / 1000.0 for i in range(n)]
        keys = [raw[4 + 3 * i][len(PREFIX):] for i in range(n)]
        return Outcome(denied == 0, denied - 1, retry_ms / 1000.0, remaining, reset, keys, "redis",
                       [m.limit for m in meters])

    async def settle(self, refunds: list[Refund], member: str) -> None:
        args: list[str | int] = [member]
        for r in refunds:
            args += (r.kind, r.limit, r.amount)
        await self._settle(keys=[*(PREFIX + r.key for r in refunds), MARKER + member], args=args)

    async def cancel(self, meters: list[Meter], member: str, marker_ms: int) -> bool:
        """Undo an admission whose answer never came; True when it had run."""
        args: list[str | int] = [member, marker_ms]
        for m in meters:
            args += (m.kind, m.limit, m.cost)
        return bool(await self._cancel(keys=[*(PREFIX + m.key for m in meters), MARKER + member], args=args))

    async def renew(self, running: list[tuple[str, tuple[str, ...]]], lease_seconds: float, marker_ms: int) -> int:
        """Extend the markers and concurrency leases of (admission id, concurrency keys)."""
        keys: list[str] = []
        args: list[str | int | float] = [lease_seconds, marker_ms]
        for member, slots in running:
            keys.append(MARKER + member)
            keys += (PREFIX + k for k in slots)
            args += (member, len(slots))
        return int(await self._renew(keys=keys, args=args))

    async def heartbeat(self, replica_id: str, gone_after: float) -> int:
        return int(await self._heartbeat(keys=[REPLICAS_KEY], args=[replica_id, gone_after]))

    async def leave(self, replica_id: str) -> None:
        await self.client.zrem(REPLICAS_KEY, replica_id)

    async def disconnect(self) -> None:
        """Drop pooled connections (after an outage they are all dead)."""
        await self.client.connection_pool.disconnect()

    async def close(self) -> None:
        await self.client.aclose()
