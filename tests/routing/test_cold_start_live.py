"""Scale-from-zero through a real gatehouse process: requests to a model whose only deployment is
down wait while it starts (here: a replica that starts listening 5 s after the wake webhook is
called), go out in order once it is up, and say so in `x-gatehouse-cold-start`; a wait past the
timeout, or beyond the queue, is an "overloaded" error with Retry-After in the client's own dialect."""
from __future__ import annotations

import asyncio
import threading
import time

import aiohttp
from aiohttp import web

from tests.conftest import BOB_KEY
from tests.routing.test_strategies_live import chat, deployments, metrics, with_model
from tests.upstreams.fleet import Replica, dead_url, fleet


async def test_requests_wait_for_a_deployment_that_starts_after_the_wake_call(start_gatehouse):
    replica = Replica("woken")  # its port is reserved; it listens only once woken (+5 s)
    woken: list[dict] = []

    async def wake(request: web.Request) -> web.Response:
        woken.append(await request.json())
        threading.Timer(5.0, replica.server.start).start()
        return web.json_response({}, status=202)

    app = web.Application()
    app.router.add_post("/wake", wake)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        cfg = with_model([("gpu", replica.url)], name="sleepy",
                         cold_start={"timeout_seconds": 20, "poll_interval_seconds": 0.25,
                                     "wake": {"url": f"http://127.0.0.1:{port}/wake"}})
        gh = start_gatehouse(cfg)
        started = time.monotonic()
        first = asyncio.create_task(chat(gh.url, "sleepy", content="one"))
        await asyncio.sleep(0.3)
        second = asyncio.create_task(chat(gh.url, "sleepy", content="two", stream=True))
        (s1, b1, h1), (s2, b2, h2) = await asyncio.gather(first, second)
        waited = time.monotonic() - started
        assert (s1, b1) == (200, "served by woken") and h1["x-gatehouse-cold-start"] == "true"
        assert s2 == 200 and "served by woken" in b2 and h2["x-gatehouse-cold-start"] == "true"
        assert 4.5 < waited < 10, waited
        assert woken == [{"model": "sleepy"}]  # one wake call per cold start
        assert replica.count == 2
        status, _, headers = await chat(gh.url, "sleepy")  # warm now: no hold
        assert status == 200 and "x-gatehouse-cold-start" not in headers
        [sleepy] = [m for m in (await deployments(gh.url))["models"] if m["name"] == "sleepy"]
        cold = sleepy["cold_start"]
        assert (cold["cold_starts"], cold["held"], cold["waiting"], cold["timeouts"]) == (1, 2, 0, 0)
        assert cold["last_wait_seconds"] > 4 and sleepy["deployments"][0]["state"] == "healthy"
        text = await metrics(gh.url)
        assert 'gatehouse_cold_starts_total{model="sleepy"} 1.0' in text
        assert 'gatehouse_cold_start_held_total{model="sleepy"} 2.0' in text
        assert 'gatehouse_cold_start_waiting{model="sleepy"} 0.0' in text
        waited = [ln for ln in text.splitlines() if ln.startswith('gatehouse_cold_start_wait_seconds_total{model="sleepy"}')]
        assert waited and float(waited[0].split()[-1]) > 8
    finally:
        replica.server.stop() if replica.server._thread.is_alive() else None
        await runner.cleanup()


async def test_a_cold_start_that_times_out_is_a_503_with_retry_after_in_the_clients_dialect(start_gatehouse):
    cfg = with_model([("gpu", dead_url())], name="sleepy",
                     cold_start={"timeout_seconds": 1, "poll_interval_seconds": 0.2})
    cfg["models"].append({"name": "full", "deployments": [{"provider": "gpu", "model": "m"}],
                          "cold_start": {"max_queue": 0}})
    gh = start_gatehouse(cfg)
    started = time.monotonic()
    async with aiohttp.ClientSession() as s, s.post(
            gh.url + "/v1/messages", headers={"x-api-key": BOB_KEY, "anthropic-version": "2023-06-01"},
            json={"model": "sleepy", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}) as r:
        body = await r.json()
        assert r.status == 529 and r.headers["Retry-After"] == "1"  # Anthropic's "overloaded"
        assert r.headers["x-gatehouse-cold-start"] == "true"
        assert body["type"] == "error" and body["error"]["type"] == "overloaded_error"
        assert "not ready within 1 s" in body["error"]["message"]
    assert 0.9 < time.monotonic() - started < 4
    started = time.monotonic()
    status, body, headers = await chat(gh.url, "full")
    assert status == 503 and "queue is full" in body and time.monotonic() - started < 1


async def test_a_cold_start_scales_the_workload_up_through_the_kubernetes_scale_subresource(start_gatehouse, tmp_path):
    replica = Replica("scaled")
    scale = {"replicas": 0}
    calls: list[tuple[str, str, str]] = []
    path = "/apis/apps/v1/namespaces/llm/deployments/vllm/scale"

    def body() -> dict:
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": "vllm", "namespace": "llm"}, "spec": {"replicas": scale["replicas"]}}

    async def get_scale(request: web.Request) -> web.Response:
        calls.append(("GET", request.headers.get("Authorization", ""), ""))
        return web.json_response(body())

    async def patch_scale(request: web.Request) -> web.Response:
        calls.append(("PATCH", request.headers.get("Authorization", ""), request.headers["Content-Type"]))
        scale["replicas"] = (await request.json())["spec"]["replicas"]
        threading.Timer(2.0, replica.server.start).start()  # the pod takes a while to be ready
        return web.json_response(body())

    app = web.Application()
    app.router.add_get(path, get_scale)
    app.router.add_patch(path, patch_scale)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    token = tmp_path / "token"
    token.write_text("service-account-token\n")
    try:
        cfg = with_model([("gpu", replica.url)], name="sleepy", cold_start={
            "timeout_seconds": 20, "poll_interval_seconds": 0.25,
            "wake": {"kubernetes": {"namespace": "llm", "name": "vllm", "replicas": 2,
                                    "api_url": f"http://127.0.0.1:{port}", "token_file": str(token)}}})
        gh = start_gatehouse(cfg)
        status, body_text, headers = await chat(gh.url, "sleepy")
        assert (status, body_text) == (200, "served by scaled") and headers["x-gatehouse-cold-start"] == "true"
        assert scale["replicas"] == 2
        assert calls == [("GET", "Bearer service-account-token", ""),
                         ("PATCH", "Bearer service-account-token", "application/merge-patch+json")]
    finally:
        replica.server.stop() if replica.server._thread.is_alive() else None
        await runner.cleanup()


async def test_a_cold_model_holds_first_and_falls_back_when_the_hold_times_out(start_gatehouse):
    with fleet(Replica("backup"), Replica("broken", fail=500)) as (backup, broken):
        cfg = with_model([("gpu", dead_url())], name="sleepy", fallbacks=["backup"],
                         cold_start={"timeout_seconds": 1, "poll_interval_seconds": 0.2})
        cfg["providers"]["backup"] = {"type": "openai", "base_url": f"{backup.url}/v1"}
        cfg["providers"]["broken"] = {"type": "openai", "base_url": f"{broken.url}/v1"}
        cfg["models"] += [{"name": "backup", "deployments": [{"provider": "backup", "model": "m"}]},
                          {"name": "sick", "deployments": [{"provider": "broken", "model": "m"}],
                           "fallbacks": ["backup"], "cold_start": {"timeout_seconds": 30}}]
        gh = start_gatehouse(cfg)
        started = time.monotonic()
        status, body, headers = await chat(gh.url, "sleepy")
        assert (status, body) == (200, "served by backup") and 0.9 < time.monotonic() - started < 4
        assert headers["x-gatehouse-cold-start"] == "true"
        assert headers["x-gatehouse-route"] == "model=backup; reason=fallback"
        # a deployment that answers 500 is not asleep: no hold, the fallback at once, tried once
        started = time.monotonic()
        status, body, headers = await chat(gh.url, "sick")
        assert (status, body) == (200, "served by backup") and time.monotonic() - started < 1
        assert "x-gatehouse-cold-start" not in headers and broken.count == 1
