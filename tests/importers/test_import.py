"""`gatehouse import litellm|kong FILE`: sample peer configs (written here, shaped as the
peers' docs show them) become configs that `gatehouse check` accepts and that serve the same
models to the same keys, with no secret copied."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.in_process import CliResult, run_cli
from tests.upstreams import openai_wire


def gatehouse(*args: str, env: dict[str, str] | None = None) -> CliResult:
    return run_cli(*args, env={**os.environ, **(env or {})})


def imported(tmp_path: Path, source: str, doc: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    src = tmp_path / f"{source}.yaml"
    src.write_text(yaml.safe_dump(doc))
    out = tmp_path / "gatehouse.yaml"
    done = gatehouse("import", source, str(src), "-o", str(out))
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    return text, yaml.safe_load(text), done.stderr


def kong_config(upstream: str) -> dict[str, Any]:
    def ai_proxy(model: str) -> dict[str, Any]:
        return {"name": "ai-proxy", "config": {
            "route_type": "llm/v1/chat",
            "auth": {"header_name": "Authorization", "header_value": f"Bearer {openai_wire.API_KEY}"},
            "model": {"provider": "openai", "name": model,
                      "options": {"upstream_url": f"{upstream}/v1/chat/completions"}}}}

    return {
        "_format_version": "3.0",
        "services": [{"name": "llm", "url": "http://localhost:32000", "routes": [
            {"name": "chat", "paths": ["/openai"], "plugins": [ai_proxy("up-chat")]},
            {"name": "reasoner", "paths": ["/reasoner"],
             "plugins": [ai_proxy("up-reasoner"), {"name": "acl", "config": {"allow": ["premium"]}}]},
        ]}],
        "plugins": [{"name": "key-auth", "config": {"key_names": ["apikey"]}}],
        "consumer_groups": [
            {"name": "dev", "plugins": [{"name": "ai-rate-limiting-advanced", "config": {
                "llm_providers": [{"name": "openai", "limit": [120000], "window_size": [120]}]}}]},
            {"name": "premium"},
        ],
        "consumers": [
            {"username": "alice", "keyauth_credentials": [{"key": "kong-alice-key"}], "groups": [{"name": "dev"}]},
            {"username": "bob", "keyauth_credentials": [{"key": "kong-bob-key"}], "groups": [{"name": "premium"}],
             "acls": [{"group": "premium"}]},
        ],
    }


def test_import_kong_serves_the_same_models_to_the_same_keys(tmp_path, openai_upstream, start_gatehouse):
    doc = kong_config(openai_upstream.url)
    doc["plugins"].append({"name": "rate-limiting", "consumer_group": "premium", "config": {"minute": 100}})
    text, cfg, notes = imported(tmp_path, "kong", doc)
    for secret in (openai_wire.API_KEY, "kong-alice-key", "kong-bob-key"):
        assert secret not in text  # keys as sha256 hashes, upstream credentials as ${VAR}
    assert cfg["providers"] == {"openai": {"type": "openai", "base_url": f"{openai_upstream.url}/v1",
                                           "api_key": "${OPENAI_API_KEY}"}}
    assert cfg["groups"]["dev"] == {"models": ["up-chat"], "tokens_per_minute": 60000}
    assert cfg["groups"]["premium"] == {"models": ["up-chat", "up-reasoner"], "requests_per_minute": 100}
    assert cfg["consumers"]["alice"]["keys"][0].startswith("sha256:")
    assert "OPENAI_API_KEY" in notes and "a 120s window was scaled" in notes

    env = {"OPENAI_API_KEY": openai_wire.API_KEY}
    assert gatehouse("check", "--config", str(tmp_path / "gatehouse.yaml")).returncode == 1  # variable unset
    check = gatehouse("check", "--config", str(tmp_path / "gatehouse.yaml"), env=env)
    assert check.returncode == 0, check.stderr

    gh = start_gatehouse(cfg, env=env)
    alice = openai.OpenAI(base_url=gh.url + "/v1", api_key="kong-alice-key", max_retries=0)
    assert [m.id for m in alice.models.list()] == ["up-chat"]
    reply = alice.chat.completions.create(model="up-chat", messages=[{"role": "user", "content": "from kong"}])
    assert reply.choices[0].message.content == "echo: from kong"
    with pytest.raises(openai.PermissionDeniedError):
        alice.chat.completions.create(model="up-reasoner", messages=[{"role": "user", "content": "x"}])
    bob = openai.OpenAI(base_url=gh.url + "/v1", api_key="kong-bob-key", max_retries=0)
    assert bob.chat.completions.create(model="up-reasoner", messages=[{"role": "user", "content": "hi"}]).choices
    # Kong clients sent their key as `apikey`: still read.
    import httpx

    r = httpx.post(gh.url + "/ai/chat", headers={"apikey": "kong-alice-key"}, timeout=10,
                   json={"model": "up-chat", "messages": [{"role": "user", "content": "via ai route"}]})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "echo: via ai route"


def test_import_litellm_serves_the_same_models_to_the_same_keys(tmp_path, openai_upstream, start_gatehouse):
    url = openai_upstream.url + "/v1"
    doc = {
        "model_list": [
            {"model_name": "chat", "litellm_params": {"model": "openai/up-chat", "api_base": url,
                                                      "api_key": "os.environ/UPSTREAM_KEY",
                                                      "input_cost_per_token": 0.000001,
                                                      "output_cost_per_token": 0.000002}},
            {"model_name": "chat", "litellm_params": {"model": "hosted_vllm/up-chat", "api_base": url,
                                                      "api_key": openai_wire.API_KEY}},
            {"model_name": "claude", "litellm_params": {"model": "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0",
                                                        "aws_region_name": "us-west-2"}},
            {"model_name": "local", "litellm_params": {"model": "ollama_chat/llama3.2",
                                                       "api_base": "http://ollama:11434"}},
            {"model_name": "azure-gpt", "litellm_params": {"model": "azure/gpt-4o",
                                                           "api_base": "https://x.openai.azure.com"}},
        ],
        "router_settings": {"model_group_alias": {"gpt-4": "chat"}},
        "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
        "teams": [{"team_id": "t-1", "team_alias": "engineering", "models": ["chat", "claude"], "tpm_limit": 5000,
                   "rpm_limit": 60, "max_budget": 100, "budget_duration": "30d"}],
        "keys": [{"key": "sk-alice-1234", "user_id": "alice", "team_id": "t-1"},
                 {"key_alias": "ci", "team_id": "t-1", "max_budget": 5, "budget_duration": "1d"}],
    }
    text, cfg, notes = imported(tmp_path, "litellm", doc)
    assert openai_wire.API_KEY not in text and "sk-alice-1234" not in text
    chat = next(m for m in cfg["models"] if m["name"] == "chat")
    assert [d["provider"] for d in chat["deployments"]] == ["openai", "vllm"]
    assert chat["deployments"][0]["input_per_mtok"] == 1.0 and chat["deployments"][0]["output_per_mtok"] == 2.0
    assert cfg["providers"]["openai"]["api_key"] == "${UPSTREAM_KEY}"
    assert cfg["providers"]["vllm"]["api_key"] == "${HOSTED_VLLM_API_KEY}"  # plaintext in, a variable out
    assert cfg["providers"]["bedrock-us-west-2"] == {"type": "bedrock", "region": "us-west-2"}
    assert cfg["providers"]["ollama_chat"] == {"type": "ollama", "base_url": "http://ollama:11434"}
    assert "azure-gpt" not in {m["name"] for m in cfg["models"]} and "'azure' has no Gatehouse equivalent" in notes
    assert cfg["model_aliases"] == {"gpt-4": "chat"} and cfg["admin"] == {"key": "${LITELLM_MASTER_KEY}"}
    assert cfg["groups"]["engineering"] == {"models": ["chat", "claude"], "description": "LiteLLM team t-1",
                                            "tokens_per_minute": 5000, "requests_per_minute": 60,
                                            "budget_usd_per_month": 100.0}
    assert cfg["consumers"]["ci"] == {"group": "engineering", "keys": [], "budget_usd_per_day": 5.0}
    assert "gatehouse keys create ci" in notes

    env = {"UPSTREAM_KEY": openai_wire.API_KEY, "HOSTED_VLLM_API_KEY": openai_wire.API_KEY,
           "LITELLM_MASTER_KEY": "admin-key-for-test"}
    check = gatehouse("check", "--config", str(tmp_path / "gatehouse.yaml"), env=env)
    assert check.returncode == 0, check.stderr
    gh = start_gatehouse(cfg, env=env)
    alice = openai.OpenAI(base_url=gh.url + "/v1", api_key="sk-alice-1234", max_retries=0)
    assert sorted(m.id for m in alice.models.list()) == ["chat", "claude"]
    for model in ("chat", "gpt-4"):  # the alias too
        reply = alice.chat.completions.create(model=model, messages=[{"role": "user", "content": "from litellm"}])
        assert reply.choices[0].message.content == "echo: from litellm"
    with pytest.raises(openai.PermissionDeniedError):
        alice.chat.completions.create(model="local", messages=[{"role": "user", "content": "x"}])


def test_import_refuses_what_it_cannot_read(tmp_path):
    src = tmp_path / "x.yaml"
    src.write_text("services: []\n")
    done = gatehouse("import", "kong", str(src))
    assert done.returncode == 1 and "not a Kong declarative config" in done.stderr
    done = gatehouse("import", "litellm", str(src))
    assert done.returncode == 1 and "no model_list" in done.stderr
    src.write_text("_format_version: '3.0'\nservices: [{name: plain, url: 'http://x'}]\n")
    done = gatehouse("import", "kong", str(src))
    assert done.returncode == 1 and "no service or route with the ai-proxy" in done.stderr
    done = gatehouse("import", "kong", str(tmp_path / "missing.yaml"))
    assert done.returncode == 1 and "cannot read" in done.stderr
