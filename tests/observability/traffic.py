"""A gateway configured for the observability tests and the scripted traffic they send:
successes (unary and streamed), limit refusals (429), an upstream failure (500), an upstream
429 and a failover past a dead deployment."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import openai
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ALICE_KEY, base_config
from tests.upstreams.harness import free_port

METRICS_TOKEN = "obs-metrics-token"
CAROL_KEY = "carol-secret-key-3"
DAVE_KEY = "dave-secret-key-4"
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
PLAIN_STREAMS, SLOW_STREAMS = 3, 4
STREAMS = PLAIN_STREAMS + SLOW_STREAMS


def observed_config(upstream_url: str, consumer_label: bool = True) -> dict[str, Any]:
    cfg = base_config(upstream_url, metrics={"token": METRICS_TOKEN, "consumer_label": consumer_label},
                      metering={"flush_seconds": 0.05})
    cfg["providers"]["up"]["max_connections"] = 2  # a burst below queues: pool-wait metrics
    cfg["providers"]["dead"] = {"type": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1",
                                "connect_timeout": 2}
    cfg["models"] = [
        {"name": "chat", "deployments": [{"provider": "up", "model": "up-chat", **PRICE}]},
        {"name": "failover", "deployments": [{"provider": "dead", "model": "gone", **PRICE},
                                             {"provider": "up", "model": "up-chat", **PRICE}]},
    ]
    cfg["groups"] = {"dev": {"models": ["*"]}, "tight": {"models": ["*"], "requests_per_minute": 2},
                     "broke": {"models": ["*"], "budget_usd_per_day": 0.0000001}}
    cfg["consumers"] = {"alice": {"group": "dev", "keys": [ALICE_KEY]},
                        "carol": {"group": "tight", "keys": [CAROL_KEY]},
                        "dave": {"group": "broke", "keys": [DAVE_KEY]}}
    return cfg


def send_traffic(url: str) -> dict[str, int]:
    """The scripted traffic; returns how many requests ended how."""
    alice = openai.OpenAI(base_url=url + "/v1", api_key=ALICE_KEY, max_retries=0)
    carol = openai.OpenAI(base_url=url + "/v1", api_key=CAROL_KEY, max_retries=0)
    said = [{"role": "user", "content": "one two three four five six"}]
    for _ in range(2):
        alice.chat.completions.create(model="chat", messages=said)
    for _ in range(PLAIN_STREAMS):
        list(alice.chat.completions.create(model="chat", messages=said, stream=True))
    alice.chat.completions.create(model="failover", messages=said)
    with ThreadPoolExecutor(SLOW_STREAMS) as pool:  # slow streams over 2 connections: some queue
        list(pool.map(lambda _: list(alice.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "DRIP a b c"}], stream=True)), range(SLOW_STREAMS)))
    failed = limited = 0
    try:
        alice.chat.completions.create(model="chat", messages=[{"role": "user", "content": "FAIL500"}])
    except openai.APIStatusError as e:
        failed += e.status_code >= 500
    try:
        alice.chat.completions.create(model="chat", messages=[{"role": "user", "content": "FAIL429"}])
    except openai.RateLimitError:
        limited += 1
    refused = 0
    for _ in range(4):
        try:
            carol.chat.completions.create(model="chat", messages=said)
        except openai.RateLimitError:
            refused += 1
    over_budget = 0
    try:
        openai.OpenAI(base_url=url + "/v1", api_key=DAVE_KEY, max_retries=0).chat.completions.create(
            model="chat", messages=said)
    except openai.RateLimitError:
        over_budget += 1
    try:
        openai.OpenAI(base_url=url + "/v1", api_key="not-a-key-0000000000", max_retries=0).chat.completions.create(
            model="chat", messages=said)
    except openai.AuthenticationError:
        pass
    return {"failed": failed, "upstream_429": limited, "refused": refused, "over_budget": over_budget}


async def _get(url: str, token: str) -> str:
    async with aiohttp.ClientSession() as s:
        async with s.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200, r.status
            return await r.text()


def scrape(url: str, token: str = METRICS_TOKEN) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    import asyncio

    out = {}
    for family in text_string_to_metric_families(asyncio.run(_get(url, token))):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def settled(url: str, timeout: float = 10.0) -> dict:
    """/metrics once the ledger writer has stored everything."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if samples[("gatehouse_ledger_backlog", ())] == 0 or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)
