"""Redis stopped under load and started again: `on_store_error: open` keeps serving with the
limit divided among the replicas, `closed` answers 503; both recover without a restart."""
from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest

from tests.conftest import ADMIN_KEY, base_config
from tests.support import Gatehouse, RedisServer

KEY = "faulty-key-0123456789"
LIMIT = 3000


@pytest.fixture(scope="module")
def redis():
    srv = RedisServer().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def pair(openai_upstream, redis, tmp_path_factory):
    """Two replicas (own SQLite each) sharing the Redis: one fails open, one fails closed."""
    home = tmp_path_factory.mktemp("faults")
    out = {}
    try:
        for policy in ("open", "closed"):
            cfg = base_config(openai_upstream.url)
            cfg["store"] = {"redis_url": redis.url}
            cfg["limits"] = {"on_store_error": policy, "store_timeout_seconds": 1.0, "breaker_reset_seconds": 0.5}
            cfg["groups"]["metered"] = {"models": ["chat"], "tokens_per_minute": LIMIT, "max_tokens": 10}
            cfg["consumers"]["faulty"] = {"group": "metered", "keys": [KEY]}
            out[policy] = Gatehouse(cfg, home / policy).start()
        yield out
    finally:
        for g in out.values():
            g.stop()


def chat(g: Gatehouse) -> httpx.Response:
    return httpx.post(g.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=20,
                      json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]})


def status(g: Gatehouse) -> dict:
    return httpx.get(g.url + "/admin/limits", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10).json()


def wait_for(check, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def load(g: Gatehouse, n: int = 20) -> list[httpx.Response]:
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        return list(pool.map(lambda _: chat(g), range(n)))


def test_redis_outage_and_recovery(pair, redis):
    opened, closed = pair["open"], pair["closed"]
    assert wait_for(lambda: status(opened)["replicas"] == 2), "both replicas heartbeat into Redis"
    for g in (opened, closed):
        r = chat(g)
        assert r.status_code == 200 and r.headers["x-ratelimit-limit-tokens"] == str(LIMIT)
        assert status(g)["store_up"] is True

    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # stop Redis while both are loaded
        during = pool.submit(lambda: (load(opened, 40), load(closed, 40)))
        time.sleep(0.05)
        redis.stop()
        open_during, closed_during = during.result()
    assert {r.status_code for r in open_during} <= {200, 429}, "open: never an error while Redis goes away"
    assert {r.status_code for r in closed_during} <= {200, 503}

    served = load(opened)
    assert {r.status_code for r in served} == {200}
    assert served[-1].headers["x-ratelimit-limit-tokens"] == str(LIMIT // 2), "the limit is split over 2 replicas"
    s = status(opened)
    assert s["store_up"] is False and s["fallback_admissions"] > 0 and s["outages"] == 1

    refused = load(closed)
    assert {r.status_code for r in refused} == {503}
    err = refused[0].json()["error"]
    assert err["code"] == "limits_unavailable" and "closed" in err["message"]
    assert "127.0.0.1" not in err["message"] and refused[0].headers["retry-after"] == "1"
    assert status(closed)["store_unavailable_rejections"] >= 20

    redis.restart()
    assert wait_for(lambda: chat(closed).status_code == 200), "closed recovers by itself"
    assert wait_for(lambda: status(opened)["store_up"])
    back = chat(opened)
    assert back.status_code == 200 and back.headers["x-ratelimit-limit-tokens"] == str(LIMIT)


def test_starts_and_serves_without_redis_then_uses_it_when_it_appears(start_gatehouse, openai_upstream):
    from tests.upstreams.harness import free_port

    port = free_port()
    cfg = base_config(openai_upstream.url)
    cfg["store"] = {"redis_url": f"redis://127.0.0.1:{port}/0"}
    cfg["limits"] = {"store_timeout_seconds": 1.0, "replicas": 2}
    cfg["groups"]["metered"] = {"models": ["chat"], "tokens_per_minute": LIMIT, "max_tokens": 10}
    cfg["consumers"]["faulty"] = {"group": "metered", "keys": [KEY]}
    g = start_gatehouse(cfg)
    r = chat(g)
    assert r.status_code == 200 and r.headers["x-ratelimit-limit-tokens"] == str(LIMIT // 2), \
        "no replica count seen yet: limits.replicas splits the limit"
    late = RedisServer(port).start()
    try:
        assert wait_for(lambda: status(g)["store_up"] and status(g)["replicas"] == 1)
        assert chat(g).headers["x-ratelimit-limit-tokens"] == str(LIMIT)
    finally:
        late.stop()
