"""The response cache step's own cost, in process (µs per request, the best of 5 rounds of 3,000):
a cacheable miss (admit: bypass checks, key digest, lookup; tap of a forwarded answer; settle:
the entry from the forwarded bytes and the store), a hit's admit (lookup, entry, reply: a first hit,
and a repeated one that reuses the entry's head), the key digest alone, and a bypassed request's admit. Everything else a request costs is the gateway's.

    PYTHONPATH=src .venv/bin/python bench/cache_step.py
"""
from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from gatehouse.api import openai as oa
from gatehouse.config import from_mapping
from gatehouse.gateway.exchange import Exchange
from gatehouse.gateway.relay import Reply
from gatehouse.policy.cache_key import request_digest
from gatehouse.runtime import Runtime
from gatehouse.types import Usage

KEY = "bench-cache-step-key"


def base_config(upstream: str) -> dict:
    return {"admin": {"key": "bench-admin"},
            "providers": {"up": {"type": "openai", "base_url": f"{upstream}/v1", "api_key": "x"}},
            "models": [{"name": "chat", "deployments": [{"provider": "up", "model": "up-chat"}]}],
            "groups": {"dev": {"models": ["*"]}}, "consumers": {"alice": {"group": "dev", "keys": [KEY]}}}


async def round_(best: dict[str, float]) -> None:
    cfg = base_config("http://127.0.0.1:9")
    cfg["models"][0]["cache"] = {"ttl_seconds": 600}
    rt = await Runtime.build(from_mapping(cfg, env={}), Path(tempfile.mkdtemp()))
    step = rt.cache
    principal = await rt.auth.authenticate({"authorization": f"Bearer {KEY}"})
    prompt = "Summarise the following text in one sentence. " * 6
    answer = json.dumps({"id": "x", "object": "chat.completion", "created": 1, "model": "chat",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "y" * 400}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 60, "completion_tokens": 100, "total_tokens": 160}}).encode()
    def exchange(i):
        body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": f"{prompt} {i}"}], "temperature": 0}).encode()
        ex = Exchange("r", "chat", "openai")
        ex.principal = principal
        call = oa.CHAT.parse(body, {})
        ex.call = call
        entry = ex.entry = rt.table.resolve("chat", principal)
        return ex, call, entry
    N = 3000
    prepared = []
    for i in range(N):
        ex, call, entry = exchange(i)
        await call.bind(rt, ex, entry)
        ex.model, ex.subject, ex.max_tokens, ex.request_headers = entry.name, call.subject, call.max_tokens, {}
        prepared.append(ex)
    # misses: admit + tap(forwarded unary) + settle
    t_admit = t_tap = t_settle = 0
    for ex in prepared:
        a = time.perf_counter_ns()
        await step.admit(ex)
        b = time.perf_counter_ns()
        r = Reply(200)
        r.body, r.usage = answer, Usage(input_tokens=60, output_tokens=100)
        r = ex.cache.tap(r)
        c = time.perf_counter_ns()
        ex.status, ex.usage = 200, r.usage
        await step.settle(ex)
        d = time.perf_counter_ns()
        t_admit += b - a
        t_tap += c - b
        t_settle += d - c
    keep(best, "miss: admit", t_admit / N)
    keep(best, "miss: tap (forwarded)", t_tap / N)
    keep(best, "miss: settle (entry, store)", t_settle / N)
    keep(best, "miss: total", (t_admit + t_tap + t_settle) / N)
    # hits: the same exchanges again (fresh state)
    keep(best, "hit: admit (lookup, entry, reply)", await hits(step, prepared) / N)
    # the same entries again: a memory entry's head was read by its first hit
    keep(best, "hit again: admit", await hits(step, prepared) / N)
    a = time.perf_counter_ns()
    for ex in prepared:
        request_digest(ex.subject, ex.model, ex.max_tokens, "g:dev", False)
    keep(best, "key digest", (time.perf_counter_ns() - a) / N)
    # bypass
    for ex in prepared[:1000]:
        ex.request_headers = {"cache-control": "no-store"}
    a = time.perf_counter_ns()
    for ex in prepared[:1000]:
        await step.admit(ex)
    keep(best, "bypass: admit", (time.perf_counter_ns() - a) / 1000)
    await rt.close()


async def hits(step: Any, prepared: list[Any]) -> int:
    """Nanoseconds the step's admit takes for every exchange, each one a hit."""
    t = 0
    for ex in prepared:
        ex.cache = ex.cached = None
        ex.response_headers, ex.cache_hit = {}, False
        a = time.perf_counter_ns()
        await step.admit(ex)
        t += time.perf_counter_ns() - a
        assert ex.cached is not None
    return t


def keep(best: dict[str, float], name: str, ns: float) -> None:
    best[name] = min(best.get(name, ns), ns)


async def main() -> None:
    best: dict[str, float] = {}
    for _ in range(5):
        await round_(best)
    for name, ns in best.items():
        print(f"{name:36} {ns / 1000:6.2f} µs")


if __name__ == "__main__":
    asyncio.run(main())
