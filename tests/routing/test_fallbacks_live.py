"""Fallback models through a real gatehouse process: on errors, on a prompt too long for the
model's context window, re-checked against the caller's access, and said in `x-gatehouse-route`
and the access log (the model and the reason, never a URL)."""
from __future__ import annotations

import asyncio
import json
import time

from tests.conftest import ALICE_KEY
from tests.routing.test_strategies_live import chat, metrics, with_model
from tests.upstreams.fleet import Replica, dead_url, fleet


def _models(cfg, *models):
    for name, prov, url, extra in models:
        cfg["providers"][prov] = {"type": "openai", "base_url": f"{url}/v1"}
        cfg["models"].append({"name": name, "deployments": [{"provider": prov, "model": "m"}], **extra})
    return cfg


async def test_a_model_whose_deployments_fail_is_served_by_its_first_usable_fallback(start_gatehouse):
    with fleet(Replica("forbidden"), Replica("backup")) as (forbidden, backup):
        cfg = with_model([("dead", dead_url())], name="chat-main", fallbacks=["chat-vip", "chat-backup"])
        _models(cfg, ("chat-vip", "forbidden", forbidden.url, {}), ("chat-backup", "backup", backup.url, {}))
        cfg["groups"]["dev"]["models"] = ["chat-main", "chat-backup"]  # alice may not use chat-vip
        gh = start_gatehouse(cfg)
        status, body, headers = await chat(gh.url, "chat-main", key=ALICE_KEY)
        assert status == 200 and body == "served by backup"
        assert headers["x-gatehouse-route"] == "model=chat-backup; reason=fallback"
        assert forbidden.count == 0
        # bob may use every model: the first fallback serves him
        status, body, headers = await chat(gh.url, "chat-main")
        assert body == "served by forbidden" and headers["x-gatehouse-route"] == "model=chat-vip; reason=fallback"
        deadline = time.monotonic() + 5
        while gh.logs().count('"route"') < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        routes = [e.get("route") for e in map(json.loads, (ln for ln in gh.logs().splitlines() if ln.startswith("{")))
                  if e.get("model") == "chat-main"]
        assert routes == ["model=chat-backup; reason=fallback", "model=chat-vip; reason=fallback"]
        assert "127.0.0.1" not in headers["x-gatehouse-route"]
        text = await metrics(gh.url)
        assert 'gatehouse_route_fallbacks_total{fallback="chat-backup",model="chat-main",reason="fallback"} 1.0' in text
        assert 'gatehouse_route_fallbacks_total{fallback="chat-vip",model="chat-main",reason="fallback"} 1.0' in text


async def test_a_fallback_is_billed_at_the_price_of_the_deployment_that_served_it(start_gatehouse):
    with fleet(Replica("backup")) as (backup,):
        cfg = with_model([("dead", dead_url())], name="chat-main", fallbacks=["chat-backup"],
                         deployment_fields=[{"input_per_mtok": 1.0, "output_per_mtok": 1.0}])
        _models(cfg, ("chat-backup", "backup", backup.url, {}))
        cfg["models"][-1]["deployments"][0].update({"input_per_mtok": 1e6, "output_per_mtok": 1e6})
        gh = start_gatehouse(cfg)
        status, body, _ = await chat(gh.url, "chat-main")
        assert body == "served by backup"
        deadline = time.monotonic() + 5
        while '"route"' not in gh.logs() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        [entry] = [e for e in map(json.loads, (ln for ln in gh.logs().splitlines() if ln.startswith("{")))
                   if e.get("model") == "chat-main"]
        assert entry["cost_usd"] == 4.0  # 1 prompt + 3 completion tokens at $1 each: the backup's price
        assert entry["deployment"] == "m" and entry["provider"] == "backup"


async def test_a_streamed_request_falls_back_too(start_gatehouse):
    with fleet(Replica("backup")) as (backup,):
        cfg = with_model([("dead", dead_url())], name="chat-main", fallbacks=["chat-backup"])
        _models(cfg, ("chat-backup", "backup", backup.url, {}))
        gh = start_gatehouse(cfg)
        status, body, headers = await chat(gh.url, "chat-main", stream=True)
        assert status == 200 and "served by backup" in body and "[DONE]" in body
        assert headers["x-gatehouse-route"] == "model=chat-backup; reason=fallback"


async def test_no_usable_fallback_gives_the_models_own_error(start_gatehouse):
    with fleet(Replica("vip")) as (vip,):
        cfg = with_model([("dead", dead_url())], name="chat-main", fallbacks=["chat-vip"])
        _models(cfg, ("chat-vip", "vip", vip.url, {}))
        cfg["groups"]["dev"]["models"] = ["chat-main"]
        gh = start_gatehouse(cfg)
        status, body, headers = await chat(gh.url, "chat-main", key=ALICE_KEY)
        assert status == 502 and "unreachable" in body and "x-gatehouse-route" not in headers
        assert vip.count == 0


async def test_a_prompt_too_long_for_the_context_window_goes_to_a_bigger_model(start_gatehouse):
    with fleet(Replica("small"), Replica("big")) as (small, big):
        cfg = with_model([("small", small.url)], name="chat-8k", context_window=50,
                         context_window_fallbacks=["chat-128k"])
        _models(cfg, ("chat-128k", "big", big.url, {"context_window": 128000}))
        gh = start_gatehouse(cfg)
        status, body, headers = await chat(gh.url, "chat-8k", content="short")
        assert body == "served by small" and "x-gatehouse-route" not in headers
        status, body, headers = await chat(gh.url, "chat-8k", content="word " * 400)
        assert status == 200 and body == "served by big"
        assert headers["x-gatehouse-route"] == "model=chat-128k; reason=context_window"
        assert small.count == 1
