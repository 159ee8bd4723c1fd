"""Redis paused (SIGSTOP) under load: admissions the gateway gave up on still run in Redis when
it resumes. Their concurrency slots must be released at once (compensation), not held for a
lease; and a long request keeps its slot past the lease because the lease is renewed."""
from __future__ import annotations

import concurrent.futures
import signal
import threading
import time

import httpx
import pytest
import redis as redis_py

from tests.conftest import ADMIN_KEY, base_config
from tests.support import Gatehouse, RedisServer

CONCURRENT = 6


@pytest.fixture(scope="module")
def redis():
    srv = RedisServer().start()
    yield srv
    if srv.proc is not None:
        srv.proc.send_signal(signal.SIGCONT)
    srv.stop()


def start(openai_upstream, redis, home, name: str, **limits) -> Gatehouse:
    cfg = base_config(openai_upstream.url)
    cfg["store"] = {"redis_url": redis.url}
    cfg["limits"] = {**limits}
    cfg["groups"]["capped"] = {"models": ["chat"], "max_concurrent": CONCURRENT}
    cfg["groups"]["single"] = {"models": ["chat"], "max_concurrent": 1}
    cfg["consumers"][name] = {"group": "single" if name == "single" else "capped", "keys": [key(name)]}
    return Gatehouse(cfg, home).start()


def key(name: str) -> str:
    return f"{name}-key-0123456789"


def chat(g: Gatehouse, name: str, text: str = "hi") -> httpx.Response:
    return httpx.post(g.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key(name)}"},
                      timeout=30, json={"model": "chat", "messages": [{"role": "user", "content": text}]})


def held_slots(client: redis_py.Redis, name: str) -> int:
    """Members of the consumer's concurrency set whose lease has not run out."""
    secs, micros = client.time()
    return int(client.zcount(f"gh:lim:conc:c:{name}", secs + micros / 1e6, "+inf"))


def test_a_redis_hang_leaves_no_slot_held(openai_upstream, redis, tmp_path):
    g = start(openai_upstream, redis, tmp_path / "hang", "hanger")
    client = redis_py.Redis(host="127.0.0.1", port=redis.port)
    try:
        assert chat(g, "hanger").status_code == 200
        stop = threading.Event()

        def load() -> list[int]:
            codes = []
            while not stop.is_set():
                codes.append(chat(g, "hanger").status_code)
            return codes

        with concurrent.futures.ThreadPoolExecutor(2 + 4) as pool:
            loaders = [pool.submit(load) for _ in range(2)]
            time.sleep(0.3)
            assert redis.proc is not None
            redis.proc.send_signal(signal.SIGSTOP)  # a hang, not a crash: commands queue up
            try:
                during = [pool.submit(chat, g, "hanger") for _ in range(4)]  # admissions Redis runs late
                time.sleep(5)
            finally:
                redis.proc.send_signal(signal.SIGCONT)
            assert {f.result().status_code for f in during} <= {200, 429}
            stop.set()
            codes = [c for f in loaders for c in f.result()]
        assert set(codes) <= {200, 429}, codes

        deadline = time.monotonic() + 5
        while held_slots(client, "hanger") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert held_slots(client, "hanger") == 0, "nothing is in flight: no slot may stay held"
        markers = [client.get(k) for k in client.scan_iter("gh:lim:adm:*")]
        assert all(m == b"x" for m in markers), "every admission settled or was cancelled (tombstones)"
        stats = httpx.get(g.url + "/admin/limits", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
        print("limits stats after the hang:", stats)
        assert stats["abandoned_admissions"] >= 1, stats  # cancelled: given back if they had run

        with concurrent.futures.ThreadPoolExecutor(CONCURRENT) as pool:  # SLOW holds each for 3 s
            statuses = [r.status_code for r in pool.map(lambda _: chat(g, "hanger", "SLOW"), range(CONCURRENT))]
        assert statuses == [200] * CONCURRENT, "the consumer can run its full concurrency again"
    finally:
        client.close()
        g.stop()


def test_a_long_request_keeps_its_slot_past_the_lease(openai_upstream, redis, tmp_path):
    g = start(openai_upstream, redis, tmp_path / "lease", "single", lease_seconds=1.5)
    client = redis_py.Redis(host="127.0.0.1", port=redis.port)
    try:
        assert chat(g, "single").status_code == 200  # (a fresh gateway's first request pays its start-up)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(chat, g, "single", "SLOW")  # 3 s upstream, two leases long
            deadline = time.monotonic() + 10
            while held_slots(client, "single") == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            # timed from its admission (a slow host may take a while to get there): past the lease
            time.sleep(2.0)
            assert held_slots(client, "single") == 1, "the lease was renewed while the first request ran"
            second = chat(g, "single")
            assert second.status_code == 429, "the lease was renewed while the first request ran"
            assert second.json()["error"]["message"].startswith("Too many concurrent requests")
            assert slow.result().status_code == 200
        assert chat(g, "single").status_code == 200, "its slot is released when it ends"
    finally:
        client.close()
        g.stop()
