"""The limiter the pipeline uses: Redis when configured, with one documented fault policy.

Every Redis call is bounded by `limits.store_timeout_seconds`; `breaker_failures` failures in
a row open a circuit breaker, after which Redis is not called at all until a probe succeeds
(`breaker_reset_seconds` later, or the heartbeat's next success). While Redis is out:

- `on_store_error: open` - admit with the in-process limiter, every limit divided by the
  replica count last seen in Redis (so the fleet as a whole stays near the limit), counted in
  `stats.fallback_admissions` and logged once per outage;
- `on_store_error: closed` - refuse with 503 `limits_unavailable`.

Without `store.redis_url` the in-process limiter is used directly: exact for one replica.

A Redis call that times out may still run later (Redis was hung, not gone). So each admission
has an id (`member`), and an admission the gateway gave up on is cancelled by id once Redis
answers again: what it took is given back, or it is made a no-op if it has not arrived yet.
Concurrency slots are short leases (`lease_seconds`) that one timer per process renews, in
batches, for every request still running; a slot whose replica died or hung frees itself when
its lease runs out. In-process slots are held until their request settles.
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
# An admission's marker outlives a few missed renewals and a short outage (limiter_lua.py).
MARKER_MIN_SECONDS = 120.0
RENEW_BATCH = 256  # admissions renewed per Redis call


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
    abandoned_admissions: int = 0  # Redis admissions given up on (timeout, error, hang-up): cancelled
    compensated_admissions: int = 0  # of those, the ones that had run in Redis and were given back


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
    def __init__(self, cfg: LimitsConfig, redis_url: str | None, workers: int = 1):
        self.cfg = cfg
        # Without Redis, `serve --workers N` counts in each process: each enforces 1/N (supervisor.py).
        self.local_share = workers if not redis_url else 1
        self.local = MemoryLimiter()
        self.redis = None
        self._store_exceptions: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError)
        if redis_url:
            self._store_exceptions = _store_errors()
            from gatehouse.store.limiter_redis import RedisLimiter

            self.redis = RedisLimiter(redis_url, cfg.store_timeout_seconds)
        self.breaker = Breaker(cfg.breaker_failures, cfg.breaker_reset_seconds)
        self.stats = LimitStats(backend="redis" if redis_url else "memory",
                                replicas=cfg.replicas if redis_url else max(cfg.replicas, workers))
        self.replica_id = uuid.uuid4().hex[:16]
        self._last_spent: dict[str, tuple[str, int]] = {}  # budget pool -> (window, spent) from Redis
        self._pending: deque[tuple[list[Refund], str]] = deque(maxlen=10_000)
        self._cancels: deque[tuple[list[Meter], str]] = deque(maxlen=10_000)
        # Redis admissions still running: id -> (their concurrency keys, monotonic admission time)
        self._running: dict[str, tuple[tuple[str, ...], float]] = {}
        self.marker_seconds = max(MARKER_MIN_SECONDS, 4 * cfg.lease_seconds)
        self._marker_ms = int(self.marker_seconds * 1000)
        self._tasks: list[asyncio.Task[None]] = []

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self.redis is not None and not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._heartbeat_loop()), loop.create_task(self._renew_loop())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if self.redis is not None:
            ignored: tuple[type[BaseException], ...] = (*self._store_exceptions, RuntimeError)
            try:
                async with asyncio.timeout(self.cfg.store_timeout_seconds):
                    await self.redis.leave(self.replica_id)
            except ignored:
                pass
            await self.redis.close()

    # ---- admission and settlement ------------------------------------------------------------

    async def admit(self, meters: list[Meter], member: str) -> Outcome:
        if self.redis is None:
            if self.local_share > 1:
                meters = [m._replace(limit=max(1, math.ceil(m.limit / self.local_share))) for m in meters]
            return self.local.admit_now(meters, member, math.inf)
        if self.breaker.allow():
            try:
                async with asyncio.timeout(self.cfg.store_timeout_seconds):
                    out = await self.redis.admit(meters, member, self.cfg.lease_seconds, self._marker_ms)
            except self._store_exceptions as e:
                self._abandon(meters, member)
                await self._failed(e)
            except asyncio.CancelledError:  # the client went away: the call may still run
                self._abandon(meters, member)
                raise
            else:
                if self.breaker.success():
                    self._recovered()
                self._remember_spend(meters, out)
                if out.ok:
                    self._running[member] = (tuple(m.key for m in meters if m.kind == LEASE), time.monotonic())
                return out
        if self.cfg.on_store_error == "closed":
            self.stats.store_unavailable_rejections += 1
            raise ServiceUnavailable(
                "Rate limits cannot be checked right now (the limits store is unreachable and "
                "limits.on_store_error is 'closed'); retry shortly.",
                code="limits_unavailable", headers={"retry-after": "1"})
        self.stats.fallback_admissions += 1
        return self.local.admit_now(self._share(meters), member, math.inf)

    def _abandon(self, meters: list[Meter], member: str) -> None:
        """Cancel an admission whose answer never came, as soon as Redis answers again."""
        self.stats.abandoned_admissions += 1
        self._cancels.append((meters, member))

    async def settle(self, outcome: Outcome, refunds: list[Refund], member: str) -> bool:
        """Give back what the request did not use. False: Redis could not take it now (it is
        replayed when Redis answers again)."""
        if outcome.backend == "local":
            if refunds:
                self.local.settle_now(refunds, member)
            return True
        assert self.redis is not None
        self._running.pop(member, None)  # settled even with nothing to give back: its marker goes
        if not self.breaker.allow():
            self._pending.append((refunds, member))
            return False
        try:
            async with asyncio.timeout(self.cfg.store_timeout_seconds):
                await self.redis.settle(refunds, member)
        except self._store_exceptions as e:
            self._pending.append((refunds, member))  # replayed when Redis answers; acts once
            await self._failed(e)
            return False
        except asyncio.CancelledError:
            self._pending.append((refunds, member))
            raise
        if self.breaker.success():
            self._recovered()
        return True

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
            policy = (f"limiting per replica (limits divided by {max(1, self.stats.replicas)} replicas)"
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

    async def _renew_loop(self) -> None:
        """Renew the leases (and markers) of the Redis admissions still running: one timer and
        one Redis call per RENEW_BATCH admissions, every third of a lease. An admission without
        a concurrency slot only needs its marker kept, which lives far longer: renewed late."""
        assert self.redis is not None
        lease = self.cfg.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            if not self._running or self.breaker.is_open:
                continue
            old = time.monotonic() - self.marker_seconds / 4
            running = [(member, slots) for member, (slots, at) in self._running.items() if slots or at < old]
            for i in range(0, len(running), RENEW_BATCH):
                try:
                    async with asyncio.timeout(self.cfg.store_timeout_seconds):
                        await self.redis.renew(running[i:i + RENEW_BATCH], lease, self._marker_ms)
                except self._store_exceptions as e:
                    await self._failed(e)
                    break
                except Exception:
                    log.exception("renewing limit leases failed")
                    break

    async def _replay(self) -> None:
        assert self.redis is not None
        while self._cancels and not self.breaker.is_open:
            meters, member = self._cancels[0]
            try:
                async with asyncio.timeout(self.cfg.store_timeout_seconds):
                    if await self.redis.cancel(meters, member, self._marker_ms):
                        self.stats.compensated_admissions += 1
            except self._store_exceptions as e:
                await self._failed(e)
                return
            self._cancels.popleft()
        while self._pending and not self.breaker.is_open:
            refunds, member = self._pending[0]
            try:
                async with asyncio.timeout(self.cfg.store_timeout_seconds):
                    await self.redis.settle(refunds, member)
            except self._store_exceptions as e:
                await self._failed(e)
                return
            self._pending.popleft()
