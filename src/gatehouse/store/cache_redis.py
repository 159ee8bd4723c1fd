"""The shared response cache: Redis, one key per answer with its TTL (PX), read by every replica.

Keys are `gh:cache:<model tag>:<group tag>:<request digest>`, the tags short hashes of the names,
so `DELETE /admin/cache` can find a model's or a group's entries with SCAN MATCH whatever
characters the names hold. A lookup is one GET (one round trip); a store one SET after the
answer is out. Redis that does not answer within the timeout is a miss, never an error.
"""
from __future__ import annotations

import hashlib

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

PREFIX = "gh:cache:"


def tag(name: str | None) -> str:
    """A name as a key segment without glob or separator characters."""
    if name is None:
        return "-"
    return hashlib.blake2b(name.encode(), digest_size=6).hexdigest()


class RedisCache:
    kind = "redis"

    def __init__(self, url: str, timeout: float = 0.25):
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=False,
            retry=Retry(NoBackoff(), 1), health_check_interval=0, max_connections=256,
        )
        self.held = 0  # (held in Redis, not here)

    @staticmethod
    def key(digest: str, model: str, group: str | None) -> str:
        return f"{PREFIX}{tag(model)}:{tag(group)}:{digest}"

    async def get(self, key: str) -> bytes | None:
        value = await self.client.get(key)
        return value if value is None or isinstance(value, bytes) else value.encode()

    async def put(self, key: str, payload: bytes, ttl: float, model: str, group: str | None) -> None:
        await self.client.set(key, payload, px=max(1, int(ttl * 1000)))

    async def clear(self, model: str | None = None, group: str | None = None) -> int:
        pattern = f"{PREFIX}{tag(model) if model is not None else '*'}:{tag(group) if group is not None else '*'}:*"
        n = 0
        batch: list[bytes] = []
        async for k in self.client.scan_iter(match=pattern, count=1000):
            batch.append(k)
            if len(batch) >= 500:
                n += await self.client.unlink(*batch)
                batch.clear()
        if batch:
            n += await self.client.unlink(*batch)
        return n

    async def close(self) -> None:
        await self.client.aclose()
