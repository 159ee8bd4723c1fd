"""examples/five-roles.yaml served for real: each role gets its models and its allowance.
Every provider of the example points at the OpenAI-wire test upstream."""
from __future__ import annotations

import httpx
import pytest
import yaml

from tests.support import ROOT, Gatehouse
from tests.upstreams import openai_wire

KEYS = {"ops-lead": "OPS_LEAD_KEY", "alice": "ALICE_KEY", "bob": "BOB_KEY", "carol": "CAROL_KEY",
        "visitor": "VISITOR_KEY", "ci-pipeline": "CI_KEY"}


@pytest.fixture(scope="module")
def gh(openai_upstream, tmp_path_factory):
    raw = yaml.safe_load((ROOT / "examples" / "five-roles.yaml").read_text())
    raw["server"]["host"] = "127.0.0.1"
    for p in raw["providers"].values():  # the test upstream wants its key from every caller
        p["api_key"] = openai_wire.API_KEY
    raw["providers"]["anthropic"]["base_url"] = openai_upstream.url + "/v1"
    env = {"VLLM_URL": openai_upstream.url, "OLLAMA_URL": openai_upstream.url, "GATEHOUSE_ADMIN_KEY": "five-admin",
           **{var: f"{who}-key-0123456789" for who, var in KEYS.items()}}
    g = Gatehouse(raw, tmp_path_factory.mktemp("five"), env).start()
    yield g
    g.stop()


def chat(gh, who: str, model: str, **extra) -> httpx.Response:
    return httpx.post(gh.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {who}-key-0123456789"},
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}, timeout=10)


@pytest.mark.parametrize("who,model,tokens_per_minute", [
    ("ops-lead", "llama3.2:3b", None), ("ops-lead", "claude-sonnet", None),
    ("alice", "claude-sonnet", "10000"), ("alice", "qwen3-coder:30b", "10000"),
    ("bob", "claude-sonnet", "30000"), ("carol", "qwen3-coder:30b", "5000"),
    ("visitor", "llama3.2:3b", "500"), ("ci-pipeline", "nomic-embed-text", None),
])
def test_each_role_uses_its_models_with_its_allowance(gh, who, model, tokens_per_minute):
    if model == "nomic-embed-text":
        r = httpx.post(gh.url + "/v1/embeddings", headers={"Authorization": f"Bearer {who}-key-0123456789"},
                       json={"model": model, "input": "hello"}, timeout=10)
        assert r.status_code == 200 and r.headers["x-ratelimit-limit-tokens"] == "60000"
        return
    r = chat(gh, who, model)
    assert r.status_code == 200, r.text
    assert r.headers.get("x-ratelimit-limit-tokens") == tokens_per_minute


@pytest.mark.parametrize("who,model", [("alice", "llama3.2:3b"), ("carol", "claude-sonnet"),
                                        ("visitor", "claude-sonnet"), ("visitor", "qwen3-coder:30b"),
                                        ("ci-pipeline", "claude-sonnet")])
def test_each_role_is_kept_from_other_models(gh, who, model):
    r = chat(gh, who, model)
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"


def test_guest_answers_are_capped_upstream(gh, recorder):
    assert chat(gh, "visitor", "llama3.2:3b", max_tokens=4000).status_code == 200
    assert recorder.last.json()["max_tokens"] == 256


def test_models_list_follows_the_role(gh):
    r = httpx.get(gh.url + "/v1/models", headers={"Authorization": "Bearer visitor-key-0123456789"}, timeout=10)
    assert [m["id"] for m in r.json()["data"]] == ["llama3.2:3b"]
    groups = httpx.get(gh.url + "/admin/groups", headers={"Authorization": "Bearer five-admin"}, timeout=10).json()
    assert {g["name"] for g in groups["data"]} == {"admin", "developer", "analyst", "guest", "automation"}
