"""`scale_to_zero: true` readiness through a real gatehouse over real sockets: a deployment that
listens but whose readiness probe (`/health`, or the provider's health_check path) says not ready
is out of rotation — polled off the request path — so a request is held by the cold start (not
sent to an engine still loading) and goes out once the probe says ready."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from gatehouse.config import ConfigError, from_mapping
from tests.routing.test_strategies_live import chat, deployments, with_model
from tests.upstreams.fleet import Replica, fleet


async def _state(url: str, model: str) -> str:
    [m] = [m for m in (await deployments(url))["models"] if m["name"] == model]
    return m["deployments"][0]["state"]


async def test_a_deployment_whose_readiness_probe_says_not_ready_holds_requests_until_it_is(start_gatehouse):
    with fleet(Replica("loading")) as (replica,):
        replica.health = 503  # listening, answering /v1/models, but the engine is not ready
        cfg = with_model([("gpu", replica.url)], name="sleepy",
                         deployment_fields=[{"scale_to_zero": True}],
                         cold_start={"timeout_seconds": 20, "poll_interval_seconds": 0.2})
        gh = start_gatehouse(cfg)
        deadline = time.monotonic() + 5
        while await _state(gh.url, "sleepy") != "not_ready" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await _state(gh.url, "sleepy") == "not_ready"
        threading.Timer(2.5, lambda: setattr(replica, "health", 200)).start()
        started = time.monotonic()
        status, body, headers = await chat(gh.url, "sleepy")
        waited = time.monotonic() - started
        assert (status, body) == (200, "served by loading") and headers["x-gatehouse-cold-start"] == "true"
        assert 2.0 < waited < 8, waited
        assert replica.count == 1  # nothing was sent to it before it was ready
        assert await _state(gh.url, "sleepy") == "healthy"
        status, _, headers = await chat(gh.url, "sleepy")  # ready: no hold
        assert status == 200 and "x-gatehouse-cold-start" not in headers
        replica.health = 503  # it goes away again: out of rotation at the next poll
        deadline = time.monotonic() + 5
        while await _state(gh.url, "sleepy") != "not_ready" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await _state(gh.url, "sleepy") == "not_ready"


async def test_the_providers_health_check_path_is_the_readiness_probe(start_gatehouse):
    with fleet(Replica("a")) as (replica,):
        replica.health = 503  # /health says no; /v1/models (the configured path) answers 200
        cfg = with_model([("gpu", replica.url)], name="m1", deployment_fields=[{"scale_to_zero": True}],
                         cold_start={"timeout_seconds": 5, "poll_interval_seconds": 0.2})
        cfg["providers"]["gpu"]["health_check"] = {"path": "/v1/models", "interval_seconds": 30}
        gh = start_gatehouse(cfg)
        await asyncio.sleep(0.6)
        assert await _state(gh.url, "m1") == "healthy"
        status, body, headers = await chat(gh.url, "m1")
        assert (status, body) == (200, "served by a") and "x-gatehouse-cold-start" not in headers


def test_scale_to_zero_needs_a_cold_start():
    cfg = with_model([("gpu", "http://127.0.0.1:9")], name="m1", deployment_fields=[{"scale_to_zero": True}])
    with pytest.raises(ConfigError, match="scale_to_zero: needs the model's cold_start"):
        from_mapping(cfg)
