"""The Responses API is cached for stateless requests (`store: false`, no previous_response_id):
forwarded to a deployment that speaks Responses (its bytes are the entry), or translated for a
chat-only one; a stateful request (the gateway's stored responses) bypasses. Real sockets, the
counting Responses-wire upstream."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cache.serving import post, serve
from tests.conftest import ADMIN_KEY, ALICE_KEY
from tests.upstreams import openai_responses_wire, openai_wire
from tests.upstreams.harness import ServerThread


@pytest.fixture(scope="module")
def upstream() -> Iterator[ServerThread]:
    with ServerThread(openai_responses_wire.make_app) as srv:
        yield srv


@pytest.fixture
def gh(upstream: ServerThread, tmp_path: Path) -> Iterator[str]:
    cache = {"ttl_seconds": 60}
    cfg = {
        "admin": {"key": ADMIN_KEY},
        "providers": {"oai": {"type": "openai", "base_url": f"{upstream.url}/v1", "api_key": openai_wire.API_KEY,
                              "responses_api": True},
                      "chat-only": {"type": "openai", "base_url": f"{upstream.url}/v1",
                                    "api_key": openai_wire.API_KEY}},
        "models": [{"name": "gpt", "deployments": [{"provider": "oai", "model": "gpt-up-9"}], "cache": cache},
                   {"name": "translated", "deployments": [{"provider": "chat-only", "model": "up-chat"}],
                    "cache": cache}],
        "groups": {"dev": {"models": ["*"]}},
        "consumers": {"alice": {"group": "dev", "keys": [ALICE_KEY]}},
    }
    upstream.recorder.clear()
    with serve(cfg, tmp_path / "gh") as url:
        yield url


def ask(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "input": text, "temperature": 0, "store": False, **extra}


def calls(upstream: ServerThread) -> int:
    return sum(1 for r in upstream.recorder.requests if r.method == "POST")


def test_a_forwarded_stateless_response_is_cached_in_its_bytes(gh, upstream):
    s1, b1, h1 = post(gh + "/v1/responses", ask("gpt", "hello responses"), ALICE_KEY)
    s2, b2, h2 = post(gh + "/v1/responses", ask("gpt", "hello responses"), ALICE_KEY)
    assert (s1, s2) == (200, 200) and (h1["x-gatehouse-cache"], h2["x-gatehouse-cache"]) == ("miss", "hit")
    assert b2 == b1 and "echo: hello responses" in b1.decode()
    _, raw, h = post(gh + "/v1/responses", ask("gpt", "hello responses", stream=True), ALICE_KEY)
    assert h["x-gatehouse-cache"] == "miss" and b"response.completed" in raw  # another mode: another entry
    _, raw2, h = post(gh + "/v1/responses", ask("gpt", "hello responses", stream=True), ALICE_KEY)
    assert h["x-gatehouse-cache"] == "hit" and raw2 == raw
    assert calls(upstream) == 2


def test_a_translated_stateless_response_is_cached(gh, upstream):
    s1, b1, h1 = post(gh + "/v1/responses", ask("translated", "via chat"), ALICE_KEY)
    s2, b2, h2 = post(gh + "/v1/responses", ask("translated", "via chat"), ALICE_KEY)
    assert (s1, s2) == (200, 200) and (h1["x-gatehouse-cache"], h2["x-gatehouse-cache"]) == ("miss", "hit")
    out = json.loads(b2)
    assert out["object"] == "response" and "echo: via chat" in json.dumps(out["output"])
    assert calls(upstream) == 1


def test_stateful_and_sampled_responses_bypass(gh, upstream):
    for body in (ask("gpt", "kept", store=True), ask("gpt", "sampled", temperature=0.8)):
        for _ in range(2):
            s, _, h = post(gh + "/v1/responses", body, ALICE_KEY)
            assert s == 200 and h["x-gatehouse-cache"] == "bypass"
    assert calls(upstream) == 4
