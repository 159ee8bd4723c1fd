"""The ledger says where each attempt went and why, through a real gatehouse over real sockets:
`route` (primary, failover_<cause>, fallback, cold_start, ...), the request's compliance
`data_class` and a virtual model's choice `routed_to` — in the usage_records table, in
`GET /admin/requests/{id}` and (the last attempt's reason) in the access log; never a URL."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import aiohttp

from tests.conftest import BOB_KEY
from tests.routing.test_strategies_live import chat, with_model
from tests.support import ledger_rows
from tests.upstreams.fleet import Replica, dead_url, fleet


async def admin_request(url: str, request_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/admin/requests/{request_id}",
                                                   headers={"Authorization": "Bearer test-admin-key"}) as r:
        assert r.status == 200
        return await r.json()


async def test_each_attempt_records_why_it_went_to_its_deployment(start_gatehouse):
    with fleet(Replica("flaky", fail=502), Replica("backup")) as (flaky, backup):
        cfg = with_model([("dead", dead_url()), ("flaky", flaky.url)], name="chat-main", fallbacks=["chat-backup"])
        cfg["providers"]["backup"] = {"type": "openai", "base_url": f"{backup.url}/v1"}
        cfg["models"].append({"name": "chat-backup", "deployments": [{"provider": "backup", "model": "m"}]})
        gh = start_gatehouse(cfg)
        status, body, headers = await chat(gh.url, "chat-main")
        assert (status, body) == (200, "served by backup")
        rows = ledger_rows(gh.home, 3)
        assert [(r["attempt"], r["provider"], r["route"]) for r in rows] == [
            (1, "dead", "primary"), (2, "flaky", "failover_connect"), (3, "backup", "fallback")]
        assert all(r["model"] == "chat-main" and r["data_class"] is None and r["routed_to"] is None for r in rows)
        summary = await admin_request(gh.url, rows[0]["request_id"])
        assert [a["route_reason"] for a in summary["attempts"]] == ["primary", "failover_connect", "fallback"]
        flaky.fail = None  # the dead one is not ejected yet (below its failure threshold)
        status, body, _ = await chat(gh.url, "chat-main")
        assert body == "served by flaky"
        rows = ledger_rows(gh.home, 5)
        assert [r["route"] for r in rows[3:]] == ["primary", "failover_connect"]
        deadline = time.monotonic() + 5
        while gh.logs().count('"route_reason"') < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        logged = [e.get("route_reason") for e in map(json.loads, (ln for ln in gh.logs().splitlines()
                                                                    if ln.startswith("{")))
                  if e.get("model") == "chat-main"]
        assert logged == ["fallback", "failover_connect"]
        assert "127.0.0.1" not in json.dumps(rows)


async def test_a_request_held_for_a_cold_start_records_cold_start(start_gatehouse):
    replica = Replica("late")
    try:
        cfg = with_model([("gpu", replica.url)], name="sleepy",
                         cold_start={"timeout_seconds": 20, "poll_interval_seconds": 0.2})
        gh = start_gatehouse(cfg)
        threading.Timer(1.5, replica.server.start).start()
        status, body, headers = await chat(gh.url, "sleepy")
        assert (status, body) == (200, "served by late") and headers["x-gatehouse-cold-start"] == "true"
        rows = ledger_rows(gh.home, 2)
        assert [(r["route"], r["status"]) for r in rows] == [("primary", 502), ("cold_start", 200)]
    finally:
        replica.server.stop() if replica.server._thread.is_alive() else None


async def test_the_data_class_and_a_virtual_models_choice_are_in_the_ledger(start_gatehouse):
    with fleet(Replica("a")) as (a,):
        cfg = with_model([("a", a.url)], name="plain", data_classes=["public", "internal"])
        cfg["compliance"] = {"classes": ["public", "internal", "secret"], "policies": {"secret": "deny"}}
        cfg["routers"] = {"auto": {"strategy": "rules", "default": "plain", "rules": []}}
        gh = start_gatehouse(cfg)
        async with aiohttp.ClientSession() as s, s.post(
                gh.url + "/v1/chat/completions",
                headers={"Authorization": f"Bearer {BOB_KEY}", "x-gatehouse-data-class": "internal"},
                json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]}) as r:
            assert r.status == 200
        [row] = ledger_rows(gh.home, 1)
        assert (row["route"], row["data_class"], row["routed_to"]) == ("primary", "internal", "plain")
        summary = await admin_request(gh.url, row["request_id"])
        [attempt] = summary["attempts"]
        assert (attempt["data_class"], attempt["routed_to"]) == ("internal", "plain")
