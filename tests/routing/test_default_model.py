"""A group's default model over real sockets (docs/policy-routing.md): a request without
`model` (or with `model: default`) uses the caller's group default on every ingress, and the
Kong-style `POST /v1/chat` (messages only, X-API-Key) works; without a default the error is the
one a missing model always had."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from gatehouse.config import ConfigError, from_mapping
from tests.conftest import ALICE_KEY, BOB_KEY
from tests.provider_fixtures import ollama_upstream  # noqa: F401 - a fixture
from tests.support import Gatehouse
from tests.upstreams import anthropic_wire, openai_wire

HI = [{"role": "user", "content": "hi"}]


def config(openai_upstream: Any, anthropic_upstream: Any, ollama_upstream: Any) -> dict[str, Any]:  # noqa: F811
    return {
        "providers": {
            "oa": {"type": "openai", "base_url": openai_upstream.url + "/v1", "api_key": openai_wire.API_KEY},
            "an": {"type": "anthropic", "base_url": anthropic_upstream.url, "api_key": anthropic_wire.API_KEY},
            "ol": {"type": "ollama", "base_url": ollama_upstream.url},
        },
        "models": [
            {"name": "oa", "deployments": [{"provider": "oa", "model": "up-chat"}]},
            {"name": "an", "deployments": [{"provider": "an", "model": "claude-up"}]},
            {"name": "ol", "deployments": [{"provider": "ol", "model": "llama3.2:latest"}]},
        ],
        "groups": {"support": {"models": ["oa", "ol"], "default_model": "oa"}, "open": {"models": ["*"]}},
        "consumers": {"alice": {"group": "support", "keys": [ALICE_KEY]}, "bob": {"group": "open", "keys": [BOB_KEY]}},
    }


@pytest.fixture(scope="module")
def gh(openai_upstream, anthropic_upstream, ollama_upstream, tmp_path_factory):  # noqa: F811
    g = Gatehouse(config(openai_upstream, anthropic_upstream, ollama_upstream),
                  tmp_path_factory.mktemp("gh-default-model")).start()
    yield g
    g.stop()


def post(gh: Gatehouse, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(gh.url + path, json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", "anthropic-version": "2023-06-01",
                                          **headers})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.mark.parametrize("body", [{"messages": HI}, {"model": "default", "messages": HI}])
def test_openai_without_a_model_uses_the_group_default(gh, openai_upstream, body):
    openai_upstream.recorder.clear()
    status, out = post(gh, "/v1/chat/completions", body, bearer(ALICE_KEY))
    assert status == 200, out
    assert out["model"] == "oa"
    assert openai_upstream.recorder.last.json()["model"] == "up-chat"


def test_kong_style_v1_chat_with_x_api_key(gh, openai_upstream):
    openai_upstream.recorder.clear()
    status, out = post(gh, "/v1/chat", {"messages": HI}, {"x-api-key": ALICE_KEY})
    assert status == 200, out
    assert out["object"] == "chat.completion" and out["model"] == "oa"
    assert openai_upstream.recorder.last.path == "/v1/chat/completions"


def test_anthropic_and_ollama_ingress_use_the_default(gh, openai_upstream):
    openai_upstream.recorder.clear()
    status, out = post(gh, "/v1/messages", {"max_tokens": 16, "messages": HI}, {"x-api-key": ALICE_KEY})
    assert status == 200, out
    assert out["type"] == "message" and out["model"] == "oa"
    status, out = post(gh, "/api/chat", {"messages": HI, "stream": False}, bearer(ALICE_KEY))
    assert status == 200, out
    assert out["model"] == "oa" and out["done"] is True
    assert len(openai_upstream.recorder.requests) == 2


@pytest.mark.parametrize("body", [{"input": "hi", "store": False}, {"model": "default", "input": "hi", "store": False}])
def test_responses_api_without_a_model_uses_the_group_default(gh, openai_upstream, body):
    openai_upstream.recorder.clear()
    status, out = post(gh, "/v1/responses", body, bearer(ALICE_KEY))
    assert status == 200, out
    assert out["object"] == "response" and out["model"] == "oa"
    assert openai_upstream.recorder.last.json()["model"] == "up-chat"
    status, out = post(gh, "/v1/responses", {"input": "hi"}, bearer(BOB_KEY))
    assert status == 400 and out["error"]["message"] == "Invalid value for 'model': required field is missing"


def test_openai_sdk_responses_create_with_the_default_model(gh, openai_upstream):
    import openai

    openai_upstream.recorder.clear()
    client = openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0)
    resp = client.responses.create(model="default", input="hi", store=False)
    assert resp.model == "oa" and resp.output_text
    chunks = list(client.responses.create(model="default", input="hi", store=False, stream=True))
    assert chunks[-1].type == "response.completed" and chunks[-1].response.model == "oa"
    assert [r.json()["model"] for r in openai_upstream.recorder.requests] == ["up-chat", "up-chat"]


def test_without_a_default_the_missing_model_error_is_unchanged(gh, openai_upstream):
    openai_upstream.recorder.clear()
    status, out = post(gh, "/v1/chat/completions", {"messages": HI}, bearer(BOB_KEY))
    assert status == 400
    assert out["error"]["message"] == "Invalid value for 'model': required field is missing"
    assert out["error"]["param"] == "model"
    status, out = post(gh, "/v1/chat", {"messages": HI}, {"x-api-key": BOB_KEY})
    assert status == 400 and out["error"]["param"] == "model"
    status, out = post(gh, "/v1/messages", {"max_tokens": 16, "messages": HI}, {"x-api-key": BOB_KEY})
    assert status == 400 and out["type"] == "error"
    assert out["error"]["message"] == "Invalid value for 'model': required field is missing"
    status, out = post(gh, "/api/chat", {"messages": HI}, bearer(BOB_KEY))
    assert status == 400 and out == {"error": "model is required"}
    status, out = post(gh, "/v1/chat/completions", {"model": "default", "messages": HI}, bearer(BOB_KEY))
    assert status == 404 and "'default' does not exist" in out["error"]["message"]
    assert openai_upstream.recorder.requests == []


def test_access_log_records_the_resolved_model(gh):
    status, _ = post(gh, "/v1/chat/completions", {"messages": HI}, {"x-api-key": ALICE_KEY, "x-request-id": "dm-log-1"})
    assert status == 200
    assert access_entry(gh, "dm-log-1")["model"] == "oa"


def access_entry(gh: Gatehouse, client_request_id: str) -> dict[str, Any]:
    """The access log line of one request (written after the answer, so waited for)."""
    deadline = time.monotonic() + 5
    while client_request_id not in gh.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [json.loads(line) for line in gh.logs().splitlines() if line.startswith("{")]
    [entry] = [e for e in lines if e.get("client_request_id") == client_request_id]
    return entry


def test_default_model_is_checked_at_load():
    base = {"providers": {"oa": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}},
            "models": [{"name": "oa", "deployments": [{"provider": "oa", "model": "m"}]},
                       {"name": "ob", "deployments": [{"provider": "oa", "model": "m"}]}]}
    with pytest.raises(ConfigError, match=r"groups\.g\.default_model: unknown model 'nope'"):
        from_mapping({**base, "groups": {"g": {"default_model": "nope"}}})
    with pytest.raises(ConfigError, match=r"groups\.g\.default_model: the group may not use model 'ob'"):
        from_mapping({**base, "groups": {"g": {"models": ["oa"], "default_model": "ob"}}})
    assert from_mapping({**base, "groups": {"g": {"models": ["o*"], "default_model": "ob"}}}).groups["g"].default_model == "ob"
