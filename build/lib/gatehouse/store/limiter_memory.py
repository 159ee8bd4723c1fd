"""In-process limiter: exact for one replica, and the per-replica fallback when Redis is down.

Exact because the event loop is single-threaded and nothing here awaits: every admission
checks and reserves all its meters in one uninterrupted step, like the Redis script does.
"""
from __future__ import annotations

import time

from gatehouse.store.limiter_types import BUCKET, LEASE, Meter, Outcome, Refund, window

_MAX_KEYS = 200_000  # a bound on memory if pool names are unbounded (JWT subjects)


class MemoryLimiter:
    def __init__(self) -> None:
        self.buckets: dict[str, tuple[float, float]] = {}  # key -> (level, monotonic time)
        self.leases: dict[str, dict[str, float]] = {}  # key -> member -> expiry (monotonic)
        self.windows: dict[str, tuple[str, int]] = {}  # pool key -> (window id, spent)

    def _level(self, key: str, limit: int, now: float) -> float:
        got = self.buckets.get(key)
        if got is None:
            return float(limit)
        level, ts = got
        return min(float(limit), level + (now - ts) * limit / 60.0)

    def _spent(self, key: str, wid: str) -> int:
        got = self.windows.get(key)
        return got[1] if got is not None and got[0] == wid else 0

    def seed(self, key: str, wid: str, spent: int) -> None:
        """Start a window at a known spend (the fallback's share of what Redis last reported)."""
        if key not in self.windows or self.windows[key][0] != wid:
            self.windows[key] = (wid, spent)

    def admit_now(self, meters: list[Meter], member: str, lease_seconds: float) -> Outcome:
        mono, wall = time.monotonic(), time.time()
        n = len(meters)
        levels: list[float] = [0.0] * n
        resets: list[float] = [0.0] * n
        keys: list[str] = [m.key for m in meters]
        denied, retry = -1, 0.0
        for i, m in enumerate(meters):
            wait = 0.0
            if m.kind == BUCKET:
                level = self._level(m.key, m.limit, mono)
                if m.cost > level:
                    wait = (m.cost - level) * 60.0 / m.limit
            elif m.kind == LEASE:
                held = self.leases.get(m.key)
                if held:
                    for k in [k for k, exp in held.items() if exp <= mono]:
                        del held[k]
                level = m.limit - (len(held) if held else 0)
                if m.cost > level:
                    wait = 1.0
            else:
                wid, ends = window(m.kind, wall)
                keys[i] = f"{m.key}:{wid}"
                level = m.limit - self._spent(m.key, wid)
                resets[i] = ends - wall
                if m.cost > level:
                    wait = ends - wall
            levels[i] = level
            if wait > retry or (wait > 0 and denied < 0):
                denied, retry = i, max(retry, wait)
        if denied >= 0:
            return Outcome(False, denied, retry, [int(v) for v in levels], resets, keys, "local",
                           [m.limit for m in meters])
        if len(self.buckets) > _MAX_KEYS or len(self.windows) > _MAX_KEYS:
            self._sweep(mono)
        for i, m in enumerate(meters):
            levels[i] -= m.cost
            if m.kind == BUCKET:
                self.buckets[m.key] = (levels[i], mono)
                resets[i] = (m.limit - levels[i]) * 60.0 / m.limit
            elif m.kind == LEASE:
                self.leases.setdefault(m.key, {})[member] = mono + lease_seconds
            else:
                wid = keys[i].rsplit(":", 1)[1]
                self.windows[m.key] = (wid, self._spent(m.key, wid) + m.cost)
        return Outcome(True, -1, 0.0, [int(v) for v in levels], resets, keys, "local", [m.limit for m in meters])

    async def admit(self, meters: list[Meter], member: str, lease_seconds: float) -> Outcome:
        return self.admit_now(meters, member, lease_seconds)

    def settle_now(self, refunds: list[Refund], member: str) -> None:
        mono = time.monotonic()
        for r in refunds:
            if r.kind == BUCKET:
                level = min(float(r.limit), self._level(r.key, r.limit, mono) + r.amount)
                self.buckets[r.key] = (level, mono)
            elif r.kind == LEASE:
                held = self.leases.get(r.key)
                if held:
                    held.pop(member, None)
            else:
                pool, _, wid = r.key.rpartition(":")
                got = self.windows.get(pool)
                if got is not None and got[0] == wid:  # a window that has ended is left alone
                    self.windows[pool] = (wid, got[1] - r.amount)

    async def settle(self, refunds: list[Refund], member: str) -> None:
        self.settle_now(refunds, member)

    def _sweep(self, mono: float) -> None:
        """Forget full buckets and empty lease sets: absent means the same thing."""
        for key in [k for k, (lvl, ts) in self.buckets.items() if lvl >= 0 and mono - ts > 60.0]:
            del self.buckets[key]
        for key in [k for k, v in self.leases.items() if not v]:
            del self.leases[key]
        if len(self.windows) > _MAX_KEYS:
            self.windows.clear()
