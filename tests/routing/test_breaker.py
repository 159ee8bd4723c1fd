"""Circuit breaking and the first-byte timeout, through a real gatehouse process: a raw
upstream that hangs, one that fails then recovers, and the OpenAI-wire test upstream."""
from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from tests.conftest import BOB_KEY, base_config
from tests.upstream.test_h1 import raw_server, read_request

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
AUTH = {"Authorization": f"Bearer {BOB_KEY}"}
ANSWER = json.dumps({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
FAILED = b'{"error": {"message": "boom", "type": "server_error"}}'


async def hang(reader, writer, n):
    await read_request(reader)
    await asyncio.sleep(60)


async def post(url: str, model: str, stream: bool = False) -> tuple[int, bytes, float, dict]:
    started = time.monotonic()
    async with aiohttp.ClientSession() as s, s.post(url + "/v1/chat/completions", headers=AUTH,
                                                    json={**CHAT, "model": model, "stream": stream}) as r:
        body = await r.read()
        return r.status, body, time.monotonic() - started, dict(r.headers)


async def metrics(url: str) -> str:
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics",
                                                   headers={"Authorization": "Bearer test-admin-key"}) as r:
        return await r.text()


async def test_a_hanging_deployment_is_ejected_after_consecutive_timeouts(start_gatehouse, openai_upstream):
    async with raw_server(hang) as (hang_url, conns):
        cfg = base_config(openai_upstream.url)
        cfg["providers"]["hang"] = {"type": "openai", "base_url": f"{hang_url}/v1", "read_timeout": 1.0,
                                    "failure_threshold": 2, "ejection_seconds": 60}
        cfg["models"].append({"name": "ha", "deployments": [{"provider": "hang", "model": "x"},
                                                            {"provider": "up", "model": "up-chat"}]})
        gh = start_gatehouse(cfg)
        took = []
        for _ in range(6):
            status, _, seconds, _ = await post(gh.url, "ha")
            assert status == 200
            took.append(seconds)
        # two requests wait out the read timeout, then the deployment is skipped at once
        assert all(t >= 0.9 for t in took[:2]), took
        assert all(t < 0.5 for t in took[2:]), took
        assert len(conns) == 2
        assert 'gatehouse_upstream_ejected{deployment="x",provider="hang"} 1.0' in await metrics(gh.url)
        assert "ejected" in gh.logs()


async def test_all_deployments_ejected_fails_fast_with_503_and_retry_after(start_gatehouse):
    async with raw_server(hang) as (hang_url, conns):
        cfg = base_config("http://127.0.0.1:9")
        cfg["providers"]["hang"] = {"type": "openai", "base_url": f"{hang_url}/v1", "read_timeout": 0.5,
                                    "failure_threshold": 1, "ejection_seconds": 30}
        cfg["models"].append({"name": "solo", "deployments": [{"provider": "hang", "model": "x"}]})
        gh = start_gatehouse(cfg)
        status, body, _, _ = await post(gh.url, "solo")
        assert status == 504
        for stream in (False, True):
            status, body, seconds, headers = await post(gh.url, "solo", stream)
            assert status == 503 and seconds < 0.4
            err = json.loads(body)["error"]
            assert err["code"] == "upstream_unavailable" and err["type"] == "overloaded_error"
            assert 25 <= int(headers["Retry-After"]) <= 30
        assert len(conns) == 1  # nothing more reached the ejected upstream


async def test_half_open_probe_closes_the_breaker_when_the_upstream_is_back(start_gatehouse):
    healthy = False
    seen = 0

    async def flaky(reader, writer, n):
        nonlocal seen
        while True:
            await read_request(reader)
            seen += 1
            status, body = (b"200 OK", ANSWER) if healthy else (b"500 Internal Server Error", FAILED)
            writer.write(b"HTTP/1.1 %b\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b"
                         % (status, len(body), body))
            await writer.drain()

    async with raw_server(flaky) as (url, _):
        cfg = base_config("http://127.0.0.1:9")
        cfg["providers"]["flaky"] = {"type": "openai", "base_url": f"{url}/v1", "failure_threshold": 2,
                                     "ejection_seconds": 0.5}
        cfg["models"].append({"name": "solo", "deployments": [{"provider": "flaky", "model": "x"}]})
        gh = start_gatehouse(cfg)
        assert [(await post(gh.url, "solo"))[0] for _ in range(4)] == [502, 502, 503, 503]
        assert seen == 2
        await asyncio.sleep(0.6)
        assert (await post(gh.url, "solo"))[0] == 502  # the probe fails: ejected again, for 1 s now
        assert (await post(gh.url, "solo"))[0] == 503
        assert seen == 3
        healthy = True
        await asyncio.sleep(0.6)
        assert (await post(gh.url, "solo"))[0] == 503  # still inside the doubled ejection
        await asyncio.sleep(0.5)
        assert [(await post(gh.url, "solo"))[0] for _ in range(3)] == [200, 200, 200]
        assert seen == 6


async def test_first_byte_timeout_fails_a_stream_over_long_before_the_read_timeout(start_gatehouse, openai_upstream):
    async with raw_server(hang) as (hang_url, _):
        cfg = base_config(openai_upstream.url)
        cfg["providers"]["hang"] = {"type": "openai", "base_url": f"{hang_url}/v1", "read_timeout": 30,
                                    "first_byte_timeout": 0.5}
        cfg["models"].append({"name": "ha", "deployments": [{"provider": "hang", "model": "x"},
                                                            {"provider": "up", "model": "up-chat"}]})
        gh = start_gatehouse(cfg)
        status, body, seconds, _ = await post(gh.url, "ha", stream=True)
        assert status == 200 and b"[DONE]" in body
        assert 0.4 < seconds < 3
