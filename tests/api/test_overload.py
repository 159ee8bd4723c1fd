"""`server.max_in_flight`: requests beyond the per-process cap get 503 + Retry-After in their
dialect's error shape at once, while probes and scrapes still answer; a real gatehouse process."""
from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.conftest import BOB_KEY, base_config

AUTH = {"Authorization": f"Bearer {BOB_KEY}"}
SLOW = {"model": "chat", "stream": True, "messages": [{"role": "user", "content": "DRIP " + "w " * 30}]}


async def test_requests_over_max_in_flight_get_503_with_retry_after(start_gatehouse, openai_upstream):
    cfg = base_config(openai_upstream.url)
    cfg["server"]["max_in_flight"] = 2
    gh = start_gatehouse(cfg)
    async with aiohttp.ClientSession() as s:
        async def slow() -> bytes:
            async with s.post(gh.url + "/v1/chat/completions", json=SLOW, headers=AUTH) as r:
                assert r.status == 200
                return await r.read()

        streams = [asyncio.ensure_future(slow()) for _ in range(2)]
        await asyncio.sleep(0.4)  # both are streaming now
        async with s.post(gh.url + "/v1/chat/completions", headers=AUTH,
                          json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]}) as r:
            assert r.status == 503 and r.headers["Retry-After"] == "1"
            assert json.loads(await r.read())["error"]["code"] == "overloaded"
        async with s.post(gh.url + "/v1/messages", headers={"x-api-key": BOB_KEY, "anthropic-version": "2023-06-01"},
                          json={"model": "chat", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}) as r:
            body = json.loads(await r.read())
            assert r.status == 529 and body["type"] == "error" and body["error"]["type"] == "overloaded_error"
        for path in ("/healthz", "/readyz"):
            async with s.get(gh.url + path) as r:
                assert r.status == 200
        for body in await asyncio.gather(*streams):
            assert b"[DONE]" in body
        async with s.post(gh.url + "/v1/chat/completions", headers=AUTH,
                          json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]}) as r:
            assert r.status == 200
