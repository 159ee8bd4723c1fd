"""The limiter the pipeline uses: Redis when configured, with one documented fault policy.

Every Redis call is bounded by `limits.store_timeout_seconds`; `breaker_failures` failures in
a row open a circuit breaker, after which Redis is not called at all until a probe succeeds
(`breaker_reset_seconds` later, or the heartbeat's next success). While Redis is out:

- `on_store_error: open` - admit with the in-process limiter, every limit divided by the
  replica count last seen in Redis (so the fleet as a whole stays near the limit), counted in
  `stats.fallback_admissions` and logged once per outage;
- `on_store_error: closed` - refuse with 503 `limits_unavailable`.

Without `store.redis_url` the in-process limiter is used directly: exact for one replica.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import deque
from dataclasses import dataclass

from gatehouse.config import LimitsConfig
from gatehouse.errors import ServiceUnavailable
from gatehouse.store.limiter_memory import MemoryLimiter
from gatehouse.store.limiter_types import BUCKET, LEASE, Meter, Outcome, Refund

log = logging.getLogger("gatehouse.limits")



def _store_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError  # redis is imported only by gateways that use it

    return (RedisError, OSError, asyncio.TimeoutError)

HEARTBEAT_SECONDS = 1.0
REPLICA_GONE_SECONDS = 10.0


@dataclass
class LimitStats:
    """Counters for the metrics exporter (and `GET /admin/limits`)."""

    backend: str = "memory"  # memory | redis
    store_up: bool = True
    store_errors: int = 0
    fallback_admissions: int = 0  # admitted by the per-replica fallback while Redis was out
    store_unavailable_rejections: int = 0  # 503s under on_store_error: closed
    rejections: int = 0  # 429s from limits and budgets
    replicas: int = 1  # replica count last seen in Redis (or limits.replicas)
    outages: int = 0


class Breaker:
    def __init__(self, failures: int, reset_seconds: float):
        self.threshold = failures
        self.reset_seconds = reset_seconds
        self.failures = 0
        self.open_until = 0.0
        self.probing = False

    @property
    def is_open(self) -> bool:
        return self.failures >= self.threshold

    def allow(self) -> bool:
        if self.failures < self.threshold:
            return True
        if self.probing or time.monotonic() < self.open_until:
            return False
        self.probing = True  # half-open: one request finds out whether Redis is back
        return True

    def success(self) -> bool:
        """Returns True when this closes an open circuit."""
        was_open = self.is_open
        self.failures, self.probing = 0, False
        return was_open

    def failure(self) -> bool:
        """Returns True when this opens the circuit."""
        was_open = self.is_open
        self.failures += 1
        self.probing = False
        if self.is_open:
            self.open_until = time.monotonic() + self.reset_seconds
        return self.is_open and not was_open


class SharedLimiter:
    def __init__(self, cfg: LimitsConfig, redis_url: str | None):
        self.cfg = cfg
        self.local = MemoryLimiter()
        self.redis = None
        self._store_exceptions: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError)
        if redis_url:
            self._store_exceptions = _store_errors()
            from gatehouse.store.limiter_redis import RedisLimiter

            self.redis = RedisLimiter(redis_url, cfg.store_timeout_seconds)
        self.breaker = Breaker(cfg.breaker_failures, cfg.breaker_reset_seconds)
        self.stats = LimitStats(backend="redis" if redis_url else "memory", replicas=cfg.replicas)
        self.replica_id = uuid.uuid4().hex[:16]
        self._last_spent: dict[str, tuple[str, int]] = {}  # budget pool -> (window, spent) from Redis
        self._pending: deque[tuple[list[Refund], str]] = deque(maxlen=10_000)
        self._task: asyncio.Task | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self.redis is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._heartbeat_loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self.redis is not None:
            try:
                async with asyncio.timeout(self.cfg.store_timeout_seconds):
                    await self.redis.leave(self.replica_id)
            except (*self._store_exceptions, RuntimeError):
                pass
            await self.redis.close()

    # ---- admission and settlement ------------------------------------------------------------

    async def admit(self, meters: list[Meter], member: str) -> Outcome:
        lease = self.cfg.lease_seconds
        if self.redis is None:
            return self.local.admit_now(meters, member, lease)
        if self.breaker.allow():
            try:
                async with asyncio.timeout(self.cfg.store_timeout_seconds):
                    out = await self.redis.admit(meters, member, lease)
            except self._store_exceptions as e:
                await self._failed(e)
            else:
                if self.breaker.success():
                    self._recovered()
                self._remember_spend(meters, out)
                return out
        if self.cfg.on_store_error == "closed":
            self.stats.store_unavailable_rejections += 1
            raise ServiceUnavailable(
                "Rate limits cannot be checked right now (the limits store is unreachable and "
                "limits.on_store_error is 'closed'); retry shortly.",
                code="limits_unavailable", headers={"retry-after": "1"})
        self.stats.fallback_admissions += 1
        return self.local.admit_now(self._share(meters), member, lease)

    async def settle(self, outcome: Outcome, refunds: list[Refund], member: str) -> None:
        if not refunds:
            return
        if outcome.backend == "local":
            self.local.settle_now(refunds, member)
            return
        assert self.redis is not None
        if not self.breaker.allow():
            self._pending.append((refunds, member))
            return
        try:
            async with asyncio.timeout(self.cfg.store_timeout_seconds):
                await self.redis.settle(refunds, member)
        except self._store_exceptions as e:
            self._pending.append((refunds, member))  # retried when Redis answers again
            await self._failed(e)
        else:
            if self.breaker.success():
                self._recovered()

    # ---- fallback ----------------------------------------------------------------------------

    def _share(self, meters: list[Meter]) -> list[Meter]:
        """This replica's share of each limit while Redis is out."""
        n = max(1, self.stats.replicas)
        shared = []
        for m in meters:
            limit = max(1, math.ceil(m.limit / n))
            if m.kind not in (BUCKET, LEASE):
                seen = self._last_spent.get(m.key)
                if seen is not None:  # what was already spent in this window, shared out too
                    self.local.seed(m.key, seen[0], math.ceil(seen[1] / n))
            shared.append(m._replace(limit=limit))
        return shared

    def _remember_spend(self, meters: list[Meter], out: Outcome) -> None:
        for i, m in enumerate(meters):
            if m.kind not in (BUCKET, LEASE):
                self._last_spent[m.key] = (out.keys[i].rsplit(":", 1)[1], m.limit - out.remaining[i])

    async def _failed(self, err: BaseException) -> None:
        self.stats.store_errors += 1
        if self.breaker.failure():
            self.stats.store_up = False
            self.stats.outages += 1
            policy = ("limiting per replica (limits divided by %d replicas)" % max(1, self.stats.replicas)
                      if self.cfg.on_store_error == "open" else "refusing requests with 503")
            log.error("limits store unreachable (%s); %s until it is back", type(err).__name__, policy)
            assert self.redis is not None
            try:
                await self.redis.disconnect()
            except Exception:  # the pool is being dropped anyway
                pass

    def _recovered(self) -> None:
        self.stats.store_up = True
        log.warning("limits store is reachable again; limits are shared across replicas again")

    async def _heartbeat_loop(self) -> None:
        """Register this replica, learn the replica count, probe Redis while the circuit is
        open (so recovery needs no traffic), and replay settlements that failed."""
        assert self.redis is not None
        while True:
            try:
                async with asyncio.timeout(self.cfg.store_timeout_seconds):
                    self.stats.replicas = await self.redis.heartbeat(self.replica_id, REPLICA_GONE_SECONDS)
            except self._store_exceptions as e:
                await self._failed(e)
            except Exception:
                log.exception("limits heartbeat failed")
            else:
                if self.breaker.success():
                    self._recovered()
                await self._replay()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _replay(self) -> None:
        assert self.redis is not None
        while self._pending and not self.breaker.is_open:
            refunds, member = self._pending[0]
            try:
                async with asyncio.timeout(self.cfg.store_timeout_seconds):
                    await self.redis.settle(refunds, member)
            except self._store_exceptions as e:
                await self._failed(e)
                return
            self._pending.popleft()
