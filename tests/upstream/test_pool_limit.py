"""`max_connections`: the cap on connections to one provider's upstream, with a queue bounded
by `pool_timeout`, and the pool metrics; through a real gatehouse process and, for the h1 pool
itself, directly against a raw server."""
from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import pytest

from gatehouse.upstream import h1
from gatehouse.upstream.client import timeout
from gatehouse.upstream.pool import ConnectionLimit, PoolTimeout
from tests.conftest import BOB_KEY, base_config
from tests.routing.test_breaker import ANSWER, metrics
from tests.upstream.test_h1 import raw_server, read_request


def slow_upstream(delay: float, state: dict):
    """Answers each request after `delay` seconds; counts connections open at once."""
    state.setdefault("open", 0)
    state.setdefault("most", 0)

    async def handle(reader, writer, n):
        state["open"] += 1
        state["most"] = max(state["most"], state["open"])
        try:
            while True:
                await read_request(reader)
                await asyncio.sleep(delay)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b"
                             % (len(ANSWER), ANSWER))
                await writer.drain()
        finally:
            state["open"] -= 1

    return handle


async def chat(session: aiohttp.ClientSession, url: str, model: str) -> tuple[int, dict]:
    async with session.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {BOB_KEY}"},
                            json={"model": model, "messages": [{"role": "user", "content": "hi"}]}) as r:
        return r.status, json.loads(await r.read())


async def test_max_connections_caps_connections_and_queues_the_rest(start_gatehouse):
    state: dict = {}
    async with raw_server(slow_upstream(0.3, state)) as (url, conns):
        cfg = base_config("http://127.0.0.1:9")
        cfg["providers"]["slow"] = {"type": "openai", "base_url": f"{url}/v1", "max_connections": 3}
        cfg["models"].append({"name": "slow", "deployments": [{"provider": "slow", "model": "x"}]})
        gh = start_gatehouse(cfg)
        async with aiohttp.ClientSession() as s:
            results = await asyncio.gather(*(chat(s, gh.url, "slow") for _ in range(12)))
        assert [status for status, _ in results] == [200] * 12
        assert state["most"] <= 3 and len(conns) <= 3
        text = await metrics(gh.url)
        waits = re.search(r'gatehouse_upstream_pool_wait_seconds_count\{provider="slow"\} (\S+)', text)
        assert waits and float(waits.group(1)) >= 8, text
        assert 'gatehouse_upstream_connections_in_use{provider="slow"} 0.0' in text


async def test_pool_timeout_answers_503_upstream_busy(start_gatehouse):
    state: dict = {}
    async with raw_server(slow_upstream(1.5, state)) as (url, _):
        cfg = base_config("http://127.0.0.1:9")
        cfg["providers"]["slow"] = {"type": "openai", "base_url": f"{url}/v1", "max_connections": 1,
                                    "pool_timeout": 0.3, "failure_threshold": 1}
        cfg["models"].append({"name": "slow", "deployments": [{"provider": "slow", "model": "x"}]})
        gh = start_gatehouse(cfg)
        async with aiohttp.ClientSession() as s:
            first = asyncio.ensure_future(chat(s, gh.url, "slow"))
            await asyncio.sleep(0.2)
            status, body = await chat(s, gh.url, "slow")
            assert status == 503
            assert body["error"]["code"] == "upstream_busy" and "127.0.0.1" not in body["error"]["message"]
            assert (await first)[0] == 200
            # the cap is ours, not the upstream failing: the breaker did not eject it
            assert (await chat(s, gh.url, "slow"))[0] == 200


async def test_h1_pool_slot_is_released_on_every_ending():
    """Complete bodies, errors, dead connections and releases all give the slot back."""
    limit = ConnectionLimit(1, 0.5)
    pool = h1.H1Pool()

    async def handle(reader, writer, n):
        while True:
            head, _ = await read_request(reader)
            if b"/die" in head:
                writer.transport.abort()
                return
            if b"/hold" in head:  # a response still coming
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                await writer.drain()
                await asyncio.sleep(5)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    try:
        async with raw_server(handle) as (url, _):
            for path in ("/a", "/die", "/b"):
                if path == "/die":
                    with pytest.raises(h1.Disconnected):
                        await pool.request("GET", url + path, timeout=timeout(1, 1), limit=limit)
                    await asyncio.sleep(0.05)
                else:
                    resp = await pool.request("GET", url + path, timeout=timeout(1, 1), limit=limit)
                    assert await resp.read() == b"ok"
                assert limit.active == 0
            held = await pool.request("GET", url + "/hold", timeout=timeout(1, 5), limit=limit)
            assert limit.active == 1  # held while the response is still coming
            with pytest.raises(PoolTimeout):
                await pool.request("GET", url + "/d", timeout=timeout(1, 1), limit=limit)
            assert not limit.waiters
            held.release()
            assert limit.active == 0
    finally:
        pool.close()


async def test_aiohttp_sessions_per_provider_cap_connections_and_report_waits():
    """https upstreams (and Bedrock) go through aiohttp: a provider's own session whose
    connector holds at most max_connections, its queue time observed as the pool wait."""
    from gatehouse.upstream.client import HttpPool

    state: dict = {}
    waits: list[float] = []
    limit = ConnectionLimit(2, 5.0)
    limit.observe_wait = waits.append
    pool = HttpPool()
    try:
        async with raw_server(slow_upstream(0.2, state)) as (url, _):
            session = pool.session_for(limit)
            assert pool.session_for(limit) is session

            async def one() -> bytes:
                async with session.post(url + "/v1/chat/completions", data=b"{}",
                                        timeout=timeout(1, 5, limit.timeout)) as r:
                    return await r.read()

            assert await asyncio.gather(*(one() for _ in range(8))) == [ANSWER] * 8
        assert state["most"] == 2
        assert len(waits) >= 5 and max(waits) >= 0.15
    finally:
        await pool.close()
