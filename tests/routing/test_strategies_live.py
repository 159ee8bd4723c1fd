"""Routing strategies and priority tiers through a real gatehouse process, over a fleet of real
replicas (tests/upstreams/fleet.py) with different latencies and failure modes."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from tests.conftest import BOB_KEY, base_config
from tests.upstreams.fleet import Replica, dead_url, fleet

AUTH = {"Authorization": f"Bearer {BOB_KEY}"}


def with_model(replicas: list[tuple[str, str]], name: str = "pool", **model: Any) -> dict[str, Any]:
    """A config whose model `name` has one deployment per (provider name, url), plus `model`'s fields."""
    cfg = base_config("http://127.0.0.1:9")
    deps = []
    for prov, url in replicas:
        cfg["providers"][prov] = {"type": "openai", "base_url": f"{url}/v1"}
        deps.append({"provider": prov, "model": "m"})
    extra_deps = model.pop("deployment_fields", None)
    if extra_deps:
        for d, extra in zip(deps, extra_deps):
            d.update(extra)
    cfg["models"].append({"name": name, "deployments": deps, **model})
    return cfg


async def chat(url: str, model: str = "pool", content: str = "hi", stream: bool = False,
               key: str = BOB_KEY) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as s, s.post(
            url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
            json={"model": model, "messages": [{"role": "user", "content": content}], "stream": stream}) as r:
        body = await r.text()
        if r.status == 200 and not stream:
            body = json.loads(body)["choices"][0]["message"]["content"]
        return r.status, body, dict(r.headers)


async def metrics(url: str) -> str:
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics",
                                                   headers={"Authorization": "Bearer test-admin-key"}) as r:
        return await r.text()


async def deployments(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(url + "/admin/deployments",
                                                   headers={"Authorization": "Bearer test-admin-key"}) as r:
        assert r.status == 200
        return await r.json()


async def test_weighted_spreads_requests_by_weight(start_gatehouse):
    with fleet(Replica("a"), Replica("b"), Replica("c")) as (a, b, c):
        gh = start_gatehouse(with_model([("a", a.url), ("b", b.url), ("c", c.url)],
                                        routing={"strategy": "weighted"},
                                        deployment_fields=[{"weight": 5}, {"weight": 2}, {"weight": 1}]))
        answers = [await chat(gh.url) for _ in range(32)]
        assert all(status == 200 for status, _, _ in answers)
        assert (a.count, b.count, c.count) == (20, 8, 4)
        # smooth: the heavy one never takes a long run in a row
        served = [body.rsplit(" ", 1)[1] for _, body, _ in answers]
        assert "aaaa" not in "".join(served)


async def test_least_busy_spreads_concurrent_requests_by_what_is_in_flight(start_gatehouse):
    with fleet(Replica("a", latency=1.0), Replica("b", latency=1.0)) as (a, b):
        gh = start_gatehouse(with_model([("a", a.url), ("b", b.url)], routing={"strategy": "least-busy"}))
        answers = await asyncio.gather(*(chat(gh.url) for _ in range(6)))
        assert all(status == 200 for status, _, _ in answers)
        # each request went to the one with fewer in flight: 3 and 3 (ordered would send 6 to a)
        assert (a.count, b.count) == (3, 3) and a.max_in_flight == b.max_in_flight == 3


async def test_least_busy_sends_less_to_the_deployment_that_holds_requests_longer(start_gatehouse):
    with fleet(Replica("slow", latency=1.0), Replica("fast")) as (slow, fast):
        gh = start_gatehouse(with_model([("slow", slow.url), ("fast", fast.url)], routing={"strategy": "least-busy"}))

        async def client() -> None:
            for _ in range(6):
                assert (await chat(gh.url))[0] == 200

        await asyncio.gather(*(client() for _ in range(4)))
        assert slow.count + fast.count == 24
        assert fast.count >= 3 * slow.count, (fast.count, slow.count)


async def test_latency_prefers_the_deployment_that_answers_first(start_gatehouse):
    with fleet(Replica("slow", latency=0.5), Replica("fast")) as (slow, fast):
        gh = start_gatehouse(with_model([("slow", slow.url), ("fast", fast.url)], routing={"strategy": "latency"}))
        for _ in range(20):
            assert (await chat(gh.url))[0] == 200
        assert slow.count <= 3 and fast.count >= 17, (slow.count, fast.count)


async def test_priority_two_takes_traffic_only_while_every_priority_one_is_out(start_gatehouse):
    with fleet(Replica("gpu1"), Replica("gpu2"), Replica("overflow")) as (g1, g2, over):
        cfg = with_model([("gpu1", g1.url), ("gpu2", g2.url), ("overflow", over.url)],
                         routing={"strategy": "least-busy"},
                         deployment_fields=[{}, {}, {"priority": 2}])
        for p in ("gpu1", "gpu2"):
            cfg["providers"][p].update({"failure_threshold": 1, "ejection_seconds": 30})
        gh = start_gatehouse(cfg)
        for _ in range(10):
            assert (await chat(gh.url))[0] == 200
        assert over.count == 0 and g1.count + g2.count == 10
        g1.fail = g2.fail = 500
        answers = [await chat(gh.url) for _ in range(6)]
        assert [s for s, _, _ in answers] == [200] * 6
        assert all(body == "served by overflow" for _, body, _ in answers)
        assert g1.count + g2.count == 12  # one failure each ejected them; then straight to the overflow
        [pool] = [m for m in (await deployments(gh.url))["models"] if m["name"] == "pool"]
        assert pool["strategy"] == "least-busy"
        assert [(d["provider"], d["state"], d["priority"]) for d in pool["deployments"]] == [
            ("gpu1", "ejected", 1), ("gpu2", "ejected", 1), ("overflow", "healthy", 2)]
        assert pool["deployments"][2]["in_flight"] == 0 and pool["deployments"][2]["latency_ewma_ms"] > 0
        assert "127.0.0.1" not in json.dumps(pool)
        text = await metrics(gh.url)
        assert 'gatehouse_deployment_ejections_total{deployment="m",model="pool",provider="gpu1"} 1.0' in text
        assert 'gatehouse_deployment_in_flight{deployment="m",model="pool",provider="overflow"} 0.0' in text


async def test_a_saturated_deployment_is_passed_over_while_another_has_room(start_gatehouse):
    with fleet(Replica("small", latency=0.3), Replica("big", latency=0.3)) as (small, big):
        gh = start_gatehouse(with_model([("small", small.url), ("big", big.url)],
                                        deployment_fields=[{"max_in_flight": 1}, {}]))
        answers = await asyncio.gather(*(chat(gh.url) for _ in range(5)))
        assert all(s == 200 for s, _, _ in answers)
        assert small.max_in_flight == 1 and small.count == 1 and big.count == 4


async def test_an_upstream_429_cools_that_deployment_down_for_its_retry_after(start_gatehouse):
    with fleet(Replica("limited", fail=429, retry_after="2"), Replica("spare")) as (limited, spare):
        gh = start_gatehouse(with_model([("limited", limited.url), ("spare", spare.url)]))
        for _ in range(5):
            status, body, _ = await chat(gh.url)
            assert status == 200 and body == "served by spare"
        assert limited.count == 1  # skipped while it cools down
        [pool] = [m for m in (await deployments(gh.url))["models"] if m["name"] == "pool"]
        assert [d["state"] for d in pool["deployments"]] == ["cooling", "healthy"]
        text = await metrics(gh.url)
        assert 'gatehouse_deployment_cooling{deployment="m",model="pool",provider="limited"} 1.0' in text
        assert 'gatehouse_deployment_ejections_total{deployment="m",model="pool",provider="limited"} 0.0' in text
        limited.fail = None
        await asyncio.sleep(2.1)
        assert (await chat(gh.url))[1] == "served by limited"


async def test_a_single_deployment_429_still_reaches_the_client_and_the_next_request_goes_upstream(start_gatehouse):
    with fleet(Replica("solo", fail=429, retry_after="30")) as (solo,):
        gh = start_gatehouse(with_model([("solo", solo.url)]))
        assert (await chat(gh.url))[0] == 429
        assert (await chat(gh.url))[0] == 429
        assert solo.count == 2  # nowhere else to go: no cool-down, as before


async def test_the_ejection_cap_keeps_part_of_the_pool_in_rotation(start_gatehouse):
    with fleet(Replica("a", fail=500), Replica("b", fail=500)) as (a, b):
        cfg = with_model([("a", a.url), ("b", b.url)], routing={"max_ejected_percent": 50})
        for p in ("a", "b"):
            cfg["providers"][p].update({"failure_threshold": 1, "ejection_seconds": 30})
        gh = start_gatehouse(cfg)
        assert [(await chat(gh.url))[0] for _ in range(3)] == [502, 502, 502]
        assert (a.count, b.count) == (1, 3)  # a ejected; b would make it 100%: still tried


async def test_without_the_cap_the_whole_pool_is_ejected_and_fails_fast(start_gatehouse):
    with fleet(Replica("a", fail=500), Replica("b", fail=500)) as (a, b):
        cfg = with_model([("a", a.url), ("b", b.url)])
        for p in ("a", "b"):
            cfg["providers"][p].update({"failure_threshold": 1, "ejection_seconds": 30})
        gh = start_gatehouse(cfg)
        assert [(await chat(gh.url))[0] for _ in range(3)] == [502, 503, 503]
        assert (a.count, b.count) == (1, 1)


async def test_max_attempts_bounds_the_failover(start_gatehouse):
    with fleet(Replica("spare")) as (spare,):
        gh = start_gatehouse(with_model([("dead", dead_url()), ("spare", spare.url)], routing={"max_attempts": 1}))
        status, body, _ = await chat(gh.url)
        assert status == 502 and "unreachable" in body
        assert spare.count == 0


async def test_prefix_affinity_keeps_each_conversation_on_one_deployment_with_bounded_load(start_gatehouse):
    replicas = [Replica(f"r{i}") for i in range(4)]
    with fleet(*replicas):
        gh = start_gatehouse(with_model([(r.name, r.url) for r in replicas], routing={"strategy": "prefix-affinity"}))

        async def session(i: int) -> list[str]:
            messages: list[dict[str, str]] = [{"role": "system", "content": "You are a coding agent. " * 50},
                                              {"role": "user", "content": f"session {i}: fix the build"}]
            served = []
            async with aiohttp.ClientSession() as s:
                for turn in range(10):
                    async with s.post(gh.url + "/v1/chat/completions", headers=AUTH,
                                      json={"model": "pool", "messages": messages}) as r:
                        assert r.status == 200
                        answer = (await r.json())["choices"][0]["message"]["content"]
                    served.append(answer)
                    messages = [*messages, {"role": "assistant", "content": answer},
                                {"role": "user", "content": f"turn {turn}"}]
            return served

        sessions = await asyncio.gather(*(session(i) for i in range(20)))
        for served in sessions:
            top = max(served.count(x) for x in set(served))
            assert top >= 0.95 * len(served), served
        counts = [r.count for r in replicas]
        assert sum(counts) == 200 and max(counts) <= 1.25 * 50, counts


async def test_load_aware_follows_the_engines_queue_and_kv_cache_as_they_change(start_gatehouse):
    with fleet(Replica("vllm"), Replica("llama")) as (vllm, llama):
        vllm.engine("vllm", waiting=12, running=8, kv=0.9)
        llama.engine("llamacpp", waiting=0, running=1, kv=0.2)
        gh = start_gatehouse(with_model([("vllm", vllm.url), ("llama", llama.url)],
                                        routing={"strategy": "load-aware", "scrape_interval_seconds": 0.1}))
        await asyncio.sleep(0.4)  # a few scrapes
        for _ in range(5):
            assert (await chat(gh.url))[1] == "served by llama"
        vllm.engine("vllm-old", waiting=0, running=0, kv=0.05)
        llama.engine("llamacpp", waiting=5, running=4, kv=0.7)
        await asyncio.sleep(0.4)
        for _ in range(5):
            assert (await chat(gh.url))[1] == "served by vllm"
        [pool] = [m for m in (await deployments(gh.url))["models"] if m["name"] == "pool"]
        engine = pool["deployments"][1]["engine"]
        assert (engine["waiting"], engine["kv_cache"], engine["saturated"]) == (5.0, 0.7, False)


async def test_load_aware_keeps_a_conversation_on_its_prefix_until_the_load_gap_exceeds_the_prefix_weight(
        start_gatehouse):
    async def turn(gh_url: str, conversation: str, n: int) -> str:
        messages = [{"role": "system", "content": f"You are agent {conversation}. " * 20},
                    {"role": "user", "content": f"task of {conversation}"}]
        messages += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": f"turn {n}"}] * n
        async with aiohttp.ClientSession() as s, s.post(gh_url + "/v1/chat/completions", headers=AUTH,
                                                        json={"model": "pool", "messages": messages}) as r:
            assert r.status == 200
            return str((await r.json())["choices"][0]["message"]["content"])

    with fleet(Replica("a"), Replica("b")) as (a, b):
        a.engine("vllm", waiting=0, running=2, kv=0.0)
        b.engine("vllm", waiting=0, running=0, kv=0.0)
        pools = {}
        for weight in (None, 0):
            routing: dict[str, Any] = {"strategy": "load-aware", "scrape_interval_seconds": 0.1}
            if weight is not None:
                routing["prefix_weight"] = weight
            pools[weight] = start_gatehouse(with_model([("a", a.url), ("b", b.url)], routing=routing))
        await asyncio.sleep(0.4)
        for gh in pools.values():
            assert await turn(gh.url, "one", 0) == "served by b"  # the lighter engine
        a.engine("vllm", waiting=0, running=0, kv=0.0)
        b.engine("vllm", waiting=0, running=2, kv=0.0)  # now b carries 2 more: less than the weight 3
        await asyncio.sleep(0.4)
        with_term, without = pools[None].url, pools[0].url
        for n in (1, 2, 3):
            assert await turn(with_term, "one", n) == "served by b"  # its prefix is cached there
            assert await turn(without, "one", n) == "served by a"  # prefix_weight 0: load alone
        assert await turn(with_term, "two", 0) == "served by a"  # a new conversation: the lighter one
        b.engine("vllm", waiting=1, running=2, kv=0.0)  # b now carries 4 more: more than the weight
        await asyncio.sleep(0.4)
        assert await turn(with_term, "one", 4) == "served by a"
        assert await turn(with_term, "one", 5) == "served by a"  # and it stays on its new home


async def test_load_aware_counts_busy_slots_of_an_engine_that_exports_no_kv_cache_use(start_gatehouse):
    # current llama.cpp: requests_processing and requests_deferred, no kv_cache_usage_ratio
    with fleet(Replica("busy"), Replica("idle")) as (busy, idle):
        busy.engine("llamacpp", waiting=0, running=4, kv=None)
        idle.engine("llamacpp", waiting=0, running=0, kv=None)
        gh = start_gatehouse(with_model([("busy", busy.url), ("idle", idle.url)],
                                        routing={"strategy": "load-aware", "scrape_interval_seconds": 0.1}))
        await asyncio.sleep(0.4)
        for _ in range(3):  # in flight, one at a time: never more than the busy engine's four
            assert (await chat(gh.url))[1] == "served by idle"
        busy.engine("llamacpp", waiting=0, running=0, kv=None)
        idle.engine("llamacpp", waiting=0, running=4, kv=None)
        await asyncio.sleep(0.4)
        assert (await chat(gh.url))[1] == "served by busy"


async def test_a_saturated_engine_is_passed_over_for_the_next_tier(start_gatehouse):
    with fleet(Replica("gpu"), Replica("overflow")) as (gpu, overflow):
        gpu.engine("sglang", waiting=40, running=32, kv=0.99)
        gh = start_gatehouse(with_model([("gpu", gpu.url), ("overflow", overflow.url)],
                                        routing={"strategy": "load-aware", "scrape_interval_seconds": 0.1,
                                                 "queue_threshold": 30},
                                        deployment_fields=[{}, {"priority": 2}]))
        await asyncio.sleep(0.4)
        assert (await chat(gh.url))[1] == "served by overflow"
        gpu.engine("sglang", waiting=3, running=32, kv=0.99)
        await asyncio.sleep(0.4)
        assert (await chat(gh.url))[1] == "served by gpu"


async def test_active_health_checks_eject_a_dead_backend_before_any_request_pays_for_it(start_gatehouse):
    with fleet(Replica("a"), Replica("b")) as (a, b):
        a.health = 503
        cfg = with_model([("a", a.url), ("b", b.url)])
        cfg["providers"]["a"].update({"failure_threshold": 2, "ejection_seconds": 60,
                                      "health_check": {"path": "/health", "interval_seconds": 0.1}})
        gh = start_gatehouse(cfg)
        await asyncio.sleep(0.5)  # a few failed checks
        for _ in range(3):
            assert (await chat(gh.url))[1] == "served by b"
        assert a.count == 0
        a.health = 200
        await asyncio.sleep(0.4)  # a passing check puts it back at once, long before its 60 s
        assert (await chat(gh.url))[1] == "served by a"


async def test_retries_try_the_plan_again_after_a_growing_backoff_then_the_fallbacks(start_gatehouse):
    with fleet(Replica("flaky"), Replica("backup")) as (flaky, backup):
        cfg = with_model([("flaky", flaky.url)], routing={"retries": 2, "retry_backoff_seconds": 0.2},
                         fallbacks=["backup"])
        cfg["providers"]["backup"] = {"type": "openai", "base_url": f"{backup.url}/v1"}
        cfg["models"].append({"name": "backup", "deployments": [{"provider": "backup", "model": "m"}]})
        gh = start_gatehouse(cfg)
        flaky.fail_next = 2
        started = time.monotonic()
        status, body, headers = await chat(gh.url)
        took = time.monotonic() - started
        assert (status, body) == (200, "served by flaky") and "x-gatehouse-route" not in headers
        assert flaky.count == 3 and 0.3 <= took < 3, took  # waits of 0.1-0.2 s, then 0.2-0.4 s
        flaky.fail_next = 3  # more than the retries: then the fallback
        status, body, headers = await chat(gh.url)
        assert (status, body) == (200, "served by backup")
        assert headers["x-gatehouse-route"] == "model=backup; reason=fallback"
        assert flaky.count == 6 and backup.count == 1


async def test_a_self_hosted_pool_defaults_to_prefix_affinity_keyed_by_claude_codes_session_header(start_gatehouse):
    replicas = [Replica(f"r{i}") for i in range(4)]
    with fleet(*replicas):
        # no routing.strategy: a pool of private (self-hosted) deployments gets prefix affinity
        gh = start_gatehouse(with_model([(r.name, r.url) for r in replicas], private=True))

        async def session(i: int) -> list[str]:
            served = []
            async with aiohttp.ClientSession() as s:
                for turn in range(6):  # nothing in the body repeats: only the header ties the turns
                    async with s.post(gh.url + "/v1/chat/completions",
                                      headers={**AUTH, "x-claude-code-session-id": f"session-{i}"},
                                      json={"model": "pool", "messages": [
                                          {"role": "user", "content": f"question {turn} of {i}"}]}) as r:
                        assert r.status == 200
                        served.append((await r.json())["choices"][0]["message"]["content"])
            return served

        sessions = await asyncio.gather(*(session(i) for i in range(12)))
        for served in sessions:
            assert len(set(served)) == 1, served  # every turn of a session on one replica
        assert len({served[0] for served in sessions}) >= 3  # and the sessions spread over the pool


async def test_a_pool_with_a_managed_deployment_keeps_ordered_failover(start_gatehouse):
    replicas = [Replica("first"), Replica("second")]
    with fleet(*replicas):
        gh = start_gatehouse(with_model([(r.name, r.url) for r in replicas]))  # not private: ordered
        for i in range(6):
            assert (await chat(gh.url, content=f"q{i}"))[1] == "served by first"
        assert replicas[1].count == 0
