"""Redis limiter: every admission and settlement is one EVALSHA of an atomic Lua script.

The client never retries on its own and times out fast (`limits.store_timeout_seconds`):
what to do when Redis does not answer is decided one level up (limiter_shared.py).
"""
from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gatehouse.store.limiter_lua import ADMIT, HEARTBEAT, SETTLE
from gatehouse.store.limiter_types import Meter, Outcome, Refund

PREFIX = "gh:lim:"
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
        self._heartbeat = self.client.register_script(HEARTBEAT)

    async def admit(self, meters: list[Meter], member: str, lease_seconds: float) -> Outcome:
        args: list[str | int | float] = [member, lease_seconds]
        for m in meters:
            args += (m.kind, m.limit, m.cost)
        raw = await self._admit(keys=[PREFIX + m.key for m in meters], args=args)
        denied, retry_ms = int(raw[0]), int(raw[1])
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
        await self._settle(keys=[PREFIX + r.key for r in refunds], args=args)

    async def heartbeat(self, replica_id: str, gone_after: float) -> int:
        return int(await self._heartbeat(keys=[REPLICAS_KEY], args=[replica_id, gone_after]))

    async def leave(self, replica_id: str) -> None:
        await self.client.zrem(REPLICAS_KEY, replica_id)

    async def disconnect(self) -> None:
        """Drop pooled connections (after an outage they are all dead)."""
        await self.client.connection_pool.disconnect()

    async def close(self) -> None:
        await self.client.aclose()
