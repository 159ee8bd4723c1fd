"""LoRA adapters as models through a real gatehouse over real sockets: `adapter: {base, name}`
routes with the base model's deployments, sends the adapter's name as the upstream `model`, and
prefers the deployment whose vLLM-style /metrics (`vllm:lora_requests_info`) reports the adapter
loaded — following it when it moves; config refuses a base that is unknown or itself an adapter."""
from __future__ import annotations

import asyncio
import time

import pytest

from gatehouse.config import ConfigError, from_mapping
from gatehouse.routing.lora import parse_lora_adapters
from tests.routing.test_strategies_live import chat, deployments, with_model
from tests.upstreams.fleet import Replica, fleet


def lora_metrics(running: str = "", waiting: str = "", stale: str = "") -> str:
    """vLLM's exposition: one series per change of the adapter set, its value the time it was set."""
    head = "# HELP vllm:lora_requests_info Running stats on lora requests.\n# TYPE vllm:lora_requests_info gauge\n"
    old = (f'vllm:lora_requests_info{{max_lora="2",running_lora_adapters="{stale}",waiting_lora_adapters=""}} '
           "1.7e9\n") if stale else ""
    return (head + old + f'vllm:lora_requests_info{{max_lora="2",running_lora_adapters="{running}",'
            f'waiting_lora_adapters="{waiting}"}} 1.8e9\n'
            "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=\"m\"} 0.0\n")


def test_the_latest_lora_series_names_the_loaded_adapters():
    assert parse_lora_adapters(lora_metrics("sql-dpo,chat-ft", "legal", stale="old")) == {"sql-dpo", "chat-ft", "legal"}
    assert parse_lora_adapters(lora_metrics()) == frozenset()
    assert parse_lora_adapters("vllm:num_requests_waiting 0\n") is None


async def test_an_adapter_goes_to_the_deployment_that_has_it_loaded(start_gatehouse):
    with fleet(Replica("a"), Replica("b")) as (a, b):
        b.metrics = lora_metrics(running="sql-dpo")
        a.metrics = lora_metrics(running="other")
        cfg = with_model([("a", a.url), ("b", b.url)], name="qwen")
        cfg["models"].append({"name": "qwen-sql", "adapter": {"base": "qwen", "name": "sql-dpo"}})
        gh = start_gatehouse(cfg)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # until the first scrape has landed
            status, body, _ = await chat(gh.url, "qwen-sql")
            if body == "served by b":
                break
            await asyncio.sleep(0.2)
        assert (status, body) == (200, "served by b")
        assert b.models[-1] == "sql-dpo"  # the adapter's name upstream
        for _ in range(3):
            assert (await chat(gh.url, "qwen-sql"))[1] == "served by b"
        [sql] = [m for m in (await deployments(gh.url))["models"] if m["name"] == "qwen-sql"]
        assert [(d["provider"], d["model"], d["lora_adapters"]) for d in sql["deployments"]] == [
            ("a", "sql-dpo", ["other"]), ("b", "sql-dpo", ["sql-dpo"])]
        status, body, _ = await chat(gh.url, "qwen")  # the base model: its own order and name
        assert body == "served by a" and a.models[-1] == "m"
        # the engine moves the adapter: a has it waiting (on its way to the GPU), b evicted it
        a.metrics, b.metrics = lora_metrics(running="other", waiting="sql-dpo"), lora_metrics()
        deadline = time.monotonic() + 5
        while (await chat(gh.url, "qwen-sql"))[1] != "served by a" and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert (await chat(gh.url, "qwen-sql"))[1] == "served by a" and a.models[-1] == "sql-dpo"
        # back on b; when b fails, the request fails over to a
        a.metrics, b.metrics = lora_metrics(), lora_metrics(running="sql-dpo")
        deadline = time.monotonic() + 5
        while (await chat(gh.url, "qwen-sql"))[1] != "served by b" and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        b.fail, before = 502, b.count
        status, body, _ = await chat(gh.url, "qwen-sql")
        assert (status, body) == (200, "served by a") and b.count == before + 1  # tried first, failed over


@pytest.mark.parametrize("adapter, message", [
    ({"base": "nope", "name": "x"}, "adapter.base: unknown model 'nope'"),
    ({"base": "sql", "name": "x"}, "is itself an adapter"),
])
def test_an_adapters_base_must_exist_and_not_be_an_adapter(adapter, message):
    cfg = with_model([("a", "http://127.0.0.1:9")], name="qwen")
    cfg["models"].append({"name": "sql", "adapter": {"base": "qwen", "name": "sql-dpo"}})
    cfg["models"].append({"name": "bad", "adapter": adapter})
    with pytest.raises(ConfigError, match=message):
        from_mapping(cfg)


def test_an_adapter_has_no_deployments_of_its_own():
    cfg = with_model([("a", "http://127.0.0.1:9")], name="qwen")
    cfg["models"].append({"name": "sql", "adapter": {"base": "qwen", "name": "sql-dpo"},
                          "deployments": [{"provider": "a", "model": "other"}]})
    with pytest.raises(ConfigError, match="leave deployments out"):
        from_mapping(cfg)
    del cfg["models"][-1]["deployments"]
    checked = from_mapping(cfg)
    [sql] = [m for m in checked.models if m.name == "sql"]
    assert [(d.provider, d.model) for d in sql.deployments] == [("a", "sql-dpo")]
