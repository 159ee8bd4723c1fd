"""The limiter's meters, in process and in a real Redis: the same semantics from both, exact
under concurrency, and the Lua calendar windows agreeing with Python's."""
from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import pytest
import redis

from gatehouse.config import LimitsConfig
from gatehouse.errors import ServiceUnavailable
from gatehouse.store.limiter_lua import WINDOW
from gatehouse.store.limiter_memory import MemoryLimiter
from gatehouse.store.limiter_redis import RedisLimiter
from gatehouse.store.limiter_shared import SharedLimiter
from gatehouse.store.limiter_types import BUCKET, DAY, LEASE, MONTH, Meter, Outcome, Refund, window
from tests.upstreams.harness import free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")


class Fresh:
    """A limiter whose admission ids are new to the (session-wide) Redis: an id seen before is
    the same admission again (idempotent), so each test run needs its own."""

    def __init__(self, lim: MemoryLimiter | RedisLimiter) -> None:
        self.lim = lim
        self.run = uuid.uuid4().hex + ":"

    async def admit(self, meters: list[Meter], member: str, lease_seconds: float) -> Outcome:
        return await self.lim.admit(meters, self.run + member, lease_seconds)

    async def settle(self, refunds: list[Refund], member: str) -> None:
        await self.lim.settle(refunds, self.run + member)


@pytest.fixture(params=["memory", "redis"])
async def limiter(request, redis_server):
    if request.param == "memory":
        yield Fresh(MemoryLimiter())
        return
    lim = RedisLimiter(redis_server.url, 2.0)
    yield Fresh(lim)
    await lim.close()


def pool() -> str:
    return "c:" + uuid.uuid4().hex


def ts(*args) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("when", [
    ts(2024, 1, 1), ts(2024, 2, 29, 23, 59, 59), ts(2024, 3, 1), ts(2023, 12, 31, 23, 59, 59) + 0.5,
    ts(2000, 2, 29, 12), ts(2100, 3, 1), ts(1970, 1, 1), ts(2026, 11, 30, 23, 59, 59), ts(2038, 1, 19, 3, 14, 8),
])
async def test_lua_windows_match_python(redis_server, when):
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        script = WINDOW + "local w, e = window(ARGV[1], tonumber(ARGV[2])) return {w, tostring(e)}"
        for kind in (DAY, MONTH):
            wid, ends = r.eval(script, 0, kind, repr(when))
            assert (wid, float(ends)) == window(kind, when)
    finally:
        r.close()


async def test_bucket_reserves_refuses_and_refunds(limiter):
    key = "tpm:" + pool()
    first = await limiter.admit([Meter("tokens", BUCKET, key, 100, 70)], "m1", 60)
    assert first.ok and first.remaining == [30]
    assert 0 < first.reset[0] <= 42.1  # 70 tokens refill at 100/min
    second = await limiter.admit([Meter("tokens", BUCKET, key, 100, 50)], "m2", 60)
    assert not second.ok and second.denied == 0
    assert 11 < second.retry_after <= 12.1  # 20 more tokens at 100/min
    await limiter.settle([Refund(BUCKET, first.keys[0], 100, 60)], "m1")  # it used only 10
    third = await limiter.admit([Meter("tokens", BUCKET, key, 100, 50)], "m3", 60)
    assert third.ok and 39 <= third.remaining[0] <= 41


async def test_usage_beyond_the_reservation_puts_the_bucket_in_debt(limiter):
    key = "tpm:" + pool()
    out = await limiter.admit([Meter("tokens", BUCKET, key, 100, 10)], "m", 60)
    await limiter.settle([Refund(BUCKET, out.keys[0], 100, -120)], "m")  # used 130
    again = await limiter.admit([Meter("tokens", BUCKET, key, 100, 1)], "m2", 60)
    assert not again.ok and again.remaining[0] < 0


async def test_all_meters_or_none(limiter):
    p = pool()
    meters = [Meter("requests", BUCKET, "rpm:" + p, 10, 1), Meter("tokens", BUCKET, "tpm:" + p, 100, 200)]
    out = await limiter.admit(meters, "m", 60)
    assert not out.ok and out.denied == 1
    ok = await limiter.admit(meters[:1], "m2", 60)
    assert ok.remaining == [9], "the refused admission reserved nothing"


async def test_lease_counts_concurrent_requests_until_settled(limiter):
    key = "conc:" + pool()
    a = await limiter.admit([Meter("concurrent", LEASE, key, 2, 1)], "a", 60)
    b = await limiter.admit([Meter("concurrent", LEASE, key, 2, 1)], "b", 60)
    c = await limiter.admit([Meter("concurrent", LEASE, key, 2, 1)], "c", 60)
    assert a.ok and b.ok and not c.ok and c.retry_after == 1
    await limiter.settle([Refund(LEASE, a.keys[0], 2, 0)], "a")
    assert (await limiter.admit([Meter("concurrent", LEASE, key, 2, 1)], "d", 60)).ok


async def test_expired_lease_frees_its_slot(limiter):
    key = "conc:" + pool()
    assert (await limiter.admit([Meter("concurrent", LEASE, key, 1, 1)], "dead-replica", 0.2)).ok
    await asyncio.sleep(0.3)
    assert (await limiter.admit([Meter("concurrent", LEASE, key, 1, 1)], "alive", 60)).ok


async def test_budget_window_reserves_and_settles_exactly(limiter):
    key = "usd:" + pool()
    budget = 1_000_000  # nano-USD
    out = await limiter.admit([Meter("usd_day", DAY, key, budget, 600_000)], "m", 60)
    assert out.ok and out.keys[0] == f"{key}:{window(DAY, time.time())[0]}"
    assert out.remaining == [400_000]
    assert not (await limiter.admit([Meter("usd_day", DAY, key, budget, 500_000)], "m2", 60)).ok
    await limiter.settle([Refund(DAY, out.keys[0], budget, 200_000)], "m")  # cost 400_000
    month = await limiter.admit([Meter("usd_day", DAY, key, budget, 600_000),
                                 Meter("usd_month", MONTH, key, 10 * budget, 600_000)], "m3", 60)
    assert month.ok and month.remaining == [0, 9_400_000]
    assert month.keys[1].endswith(window(MONTH, time.time())[0])


async def test_redis_admission_is_exact_under_concurrency(redis_server):
    lim = RedisLimiter(redis_server.url, 5.0)
    key = "tpm:" + pool()
    try:
        started = time.monotonic()
        outs = await asyncio.gather(*(lim.admit([Meter("tokens", BUCKET, key, 600, 10)], f"{key}:{i}", 60)
                                      for i in range(200)))
        elapsed = time.monotonic() - started
    finally:
        await lim.close()
    admitted = sum(o.ok for o in outs)
    # 60 from the full bucket, plus one per second of refill (600/min = 10 tokens/s).
    assert 60 <= admitted <= 60 + int(elapsed) + 1


async def test_unreachable_redis_open_policy_limits_per_replica():
    cfg = LimitsConfig(on_store_error="open", store_timeout_seconds=0.2, breaker_failures=2, replicas=4)
    lim = SharedLimiter(cfg, f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    try:
        outs = [await lim.admit([Meter("requests", BUCKET, "rpm:" + "c:x", 8, 1)], str(i)) for i in range(4)]
        assert [o.ok for o in outs] == [True, True, False, False], "8 per minute / 4 replicas = 2 here"
        assert all(o.backend == "local" for o in outs)
        assert lim.breaker.is_open and not lim.stats.store_up
        assert lim.stats.fallback_admissions == 4 and lim.stats.store_errors == 2
    finally:
        await lim.close()


async def test_unreachable_redis_closed_policy_refuses_with_503():
    cfg = LimitsConfig(on_store_error="closed", store_timeout_seconds=0.2)
    lim = SharedLimiter(cfg, f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(ServiceUnavailable) as e:
            await lim.admit([Meter("requests", BUCKET, "rpm:c:x", 8, 1)], "m")
        assert e.value.code == "limits_unavailable" and e.value.headers == {"retry-after": "1"}
        assert "127.0.0.1" not in e.value.message
    finally:
        await lim.close()


# ---- admission ids: retried, settled, cancelled and renewed once per id (Redis) -------------


@pytest.fixture
async def redis_limiter(redis_server):
    lim = RedisLimiter(redis_server.url, 2.0)
    yield lim
    await lim.close()


def meters_of(p: str) -> list[Meter]:
    return [Meter("tokens", BUCKET, "tpm:" + p, 100, 70), Meter("concurrent", LEASE, "conc:" + p, 1, 1),
            Meter("usd_day", DAY, "usd:" + p, 1000, 600)]


async def test_an_admission_sent_twice_reserves_once(redis_limiter):
    p = pool()
    first = await redis_limiter.admit(meters_of(p), p, 60)
    again = await redis_limiter.admit(meters_of(p), p, 60)  # e.g. the client's retry after a broken connection
    assert first.ok and again.ok and again.remaining == [30, 0, 400]
    assert not (await redis_limiter.admit(meters_of(p), p + "other", 60)).ok


async def test_a_settlement_replayed_acts_once(redis_limiter):
    p = pool()
    out = await redis_limiter.admit(meters_of(p), p, 60)
    refunds = [Refund(BUCKET, out.keys[0], 100, 60), Refund(LEASE, out.keys[1], 1, 0), Refund(DAY, out.keys[2], 1000, 500)]
    await redis_limiter.settle(refunds, p)
    await redis_limiter.settle(refunds, p)  # replayed after a timeout although it had run
    after = await redis_limiter.admit(meters_of(p)[:1] + meters_of(p)[2:], p + "next", 60)
    # 100 - 70 + 60 - 70 tokens; 1000 - (600 - 500) - 600 USD: given back once, not twice
    assert 20 <= after.remaining[0] <= 21 and after.remaining[1] == 300


async def test_cancelling_an_admission_that_ran_gives_everything_back(redis_limiter):
    p = pool()
    assert (await redis_limiter.admit(meters_of(p), p, 60)).ok  # ran although nobody got the answer
    assert await redis_limiter.cancel(meters_of(p), p, 60_000) is True
    assert await redis_limiter.cancel(meters_of(p), p, 60_000) is False, "once"
    fresh = await redis_limiter.admit(meters_of(p), p + "next", 60)
    assert fresh.ok and fresh.remaining[1:] == [0, 400] and fresh.remaining[0] >= 30


async def test_an_admission_cancelled_before_it_arrives_takes_nothing(redis_limiter):
    p = pool()
    assert await redis_limiter.cancel(meters_of(p), p, 60_000) is False
    with pytest.raises(TimeoutError):
        await redis_limiter.admit(meters_of(p), p, 60)  # the late arrival is a no-op
    fresh = await redis_limiter.admit(meters_of(p), p + "next", 60)
    assert fresh.ok and fresh.remaining[1:] == [0, 400]


async def test_renewal_keeps_a_running_slot_until_it_settles(redis_limiter):
    p = pool()
    conc = [Meter("concurrent", LEASE, "conc:" + p, 1, 1)]
    out = await redis_limiter.admit(conc, p, 0.3)
    for _ in range(3):
        await asyncio.sleep(0.2)
        assert await redis_limiter.renew([(p, ("conc:" + p,))], 0.3, 60_000) == 1
    assert not (await redis_limiter.admit(conc, p + "b", 0.3)).ok, "0.6 s on a 0.3 s lease: still held"
    await redis_limiter.settle([Refund(LEASE, out.keys[0], 1, 0)], p)
    assert await redis_limiter.renew([(p, ("conc:" + p,))], 0.3, 60_000) == 0, "settled: not renewed back"
    assert (await redis_limiter.admit(conc, p + "c", 0.3)).ok
