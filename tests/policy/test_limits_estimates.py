"""Token reservations are an honest upper bound across three replicas sharing Redis.

An upstream that bills the chat template (11 prompt tokens for a one-word message, as real
templates do) must not let `tokens_per_minute` overshoot by more than one request; and one that
adds a hidden system prompt (40 prompt tokens for one word) is caught by the per-deployment
calibration after a few requests, so a later burst stays within the limit too."""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import httpx
import pytest
from aiohttp import web

from tests.conftest import base_config
from tests.support import Gatehouse, GatehouseProcess, RedisServer
from tests.upstreams.harness import Recorder, ServerThread

LIMIT = 1000  # tokens per minute, refilling at ~16.7 a second
MAX_TOKENS = 10
COMPLETION = 7
PROMPT = {"templated": 11, "hidden-system": 40}  # what the upstream bills for a one-word message
KEYS = {"templated": "tmpl-key-0123456789", "hidden-system": "hsys-key-0123456789"}
ARRIVALS: dict[str, list[float]] = {name: [] for name in PROMPT}  # when each request reached the upstream


def make_upstream(recorder: Recorder) -> web.Application:
    """OpenAI chat completions that bill like a real chat template, slowly enough that a burst
    is all in flight before the first answer settles."""

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        prompt = PROMPT[body["model"]]
        ARRIVALS[body["model"]].append(time.monotonic())
        await asyncio.sleep(0.3)
        return web.json_response({
            "id": "chatcmpl-t", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "length", "logprobs": None,
                         "message": {"role": "assistant", "content": "a b c d e f g"}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": COMPLETION,
                      "total_tokens": prompt + COMPLETION}})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


# Three replicas under a 150-connection burst: each a process of its own, as in production (in the test
# process they would share one GIL with the 150 client threads).
pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def upstream():
    with ServerThread(make_upstream) as srv:
        yield srv


@pytest.fixture(scope="module")
def replicas(upstream, tmp_path_factory):
    redis = RedisServer().start()
    cfg = base_config(upstream.url)
    cfg["store"] = {"redis_url": redis.url}
    cfg["limits"] = {"store_timeout_seconds": 5.0}  # exactness here; the fallback is tested elsewhere
    cfg["models"] = [{"name": name, "deployments": [{"provider": "up", "model": name}]} for name in PROMPT]
    cfg["groups"] = {name: {"models": [name], "tokens_per_minute": LIMIT, "max_tokens": MAX_TOKENS}
                     for name in PROMPT}
    cfg["consumers"] = {name: {"group": name, "keys": [KEYS[name]]} for name in PROMPT}
    home = tmp_path_factory.mktemp("estimates")
    started: list[Gatehouse] = []
    try:
        for i in range(3):
            started.append(GatehouseProcess(cfg, home / f"r{i}").start())
        yield started
    finally:
        for g in started:
            g.stop()
        redis.stop()


def chat(url: str, model: str, client: httpx.Client | None = None) -> httpx.Response:
    return (client or httpx).post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEYS[model]}"},
                                  timeout=60, json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def billed(model: str) -> int:
    """Tokens the upstream billed for `model`: what it answered, counted on its side."""
    return len(ARRIVALS[model]) * (PROMPT[model] + COMPLETION)


def burst(replicas: list[Gatehouse], model: str, n: int = 150) -> tuple[list[httpx.Response], float]:
    """n requests at once: each client connects first, then all send together (so the bucket's
    refill during the burst stays small next to what an estimate that is too low lets through).
    Returns the responses and when they were let go."""
    released: list[float] = []
    ready = threading.Barrier(n, action=lambda: released.append(time.monotonic()))

    def one(i: int) -> httpx.Response:
        url = replicas[i % 3].url
        with httpx.Client() as client:
            client.get(url + "/healthz")
            ready.wait(60)
            return chat(url, model, client)

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n))), released[0]


def check_within_limit(model: str, responses: list[httpx.Response], started: float) -> None:
    # Every admission happened between `started` and the last request reaching the upstream:
    # the bucket refilled by at most that long's worth.
    elapsed = ARRIVALS[model][-1] - started
    codes = {r.status_code for r in responses}
    assert codes <= {200, 429}, [r.text for r in responses if r.status_code not in (200, 429)]
    assert 429 in codes, "the burst is bigger than the limit"
    used = billed(model)
    one_request = PROMPT[model] + COMPLETION
    refill = LIMIT / 60 * elapsed
    print(f"{model}: {used} tokens billed, limit {LIMIT} + one request {one_request} + refill {refill:.0f}")
    assert used <= LIMIT + one_request + refill, (used, elapsed)
    assert used >= LIMIT / 2


def test_template_overhead_keeps_a_burst_within_the_limit(replicas):
    responses, started = burst(replicas, "templated")
    check_within_limit("templated", responses, started)


def test_calibration_learns_a_deployments_hidden_prompt(replicas):
    started = time.monotonic()
    for g in replicas:  # a few requests teach each replica what this deployment really bills
        for _ in range(2):
            assert chat(g.url, "hidden-system").status_code == 200
    responses, _ = burst(replicas, "hidden-system")
    check_within_limit("hidden-system", responses, started)
