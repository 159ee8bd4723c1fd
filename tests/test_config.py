"""Config loading: interpolation, typed validation with field paths, references, `gatehouse check`."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from gatehouse.config import ConfigError, from_mapping, load
from tests.in_process import run_cli

ROOT = Path(__file__).resolve().parent.parent


def minimal(**extra):
    cfg = {"providers": {"ollama": {"type": "openai", "base_url": "http://127.0.0.1:11434/v1"}},
           "models": [{"name": "m", "deployments": [{"provider": "ollama", "model": "llama3"}]}]}
    cfg.update(extra)
    return cfg


def error_of(raw, env=None) -> str:
    with pytest.raises(ConfigError) as e:
        from_mapping(raw, env or {})
    return str(e.value)


def test_valid_config_loads_with_defaults():
    cfg = from_mapping(minimal(), {})
    assert cfg.server.port == 8080 and cfg.server.max_body_bytes == 10 * 1024 * 1024
    assert cfg.models[0].deployments[0].model == "llama3"


def test_interpolation_with_defaults_and_escapes():
    raw = minimal(admin={"key": "${ADMIN:-fallback}"}, consumers={"a": {"keys": ["${A_KEY}", "$${literal}"]}},
                  access={"default_group": "g"}, groups={"g": {}})
    cfg = from_mapping(raw, {"A_KEY": "secret-a"})
    assert cfg.admin.key == "fallback"
    assert cfg.consumers["a"].keys == ["secret-a", "${literal}"]


def test_missing_variable_names_the_field():
    msg = error_of(minimal(consumers={"alice": {"keys": ["${ALICE_KEY}"]}}))
    assert msg == "consumers.alice.keys[0]: environment variable ALICE_KEY is not set"


@pytest.mark.parametrize("mutate,expected", [
    (lambda c: c["models"].append({"name": "x", "deployments": [{"provider": "olama", "model": "y"}]}),
     "models[1].deployments[0].provider: unknown provider 'olama'"),
    (lambda c: c["providers"].update(bad={"type": "nope"}), "providers.bad.type: unknown provider type 'nope'"),
    (lambda c: c.update(server={"port": "eighty"}), "server.port: expected 'int', got 'str'"),
    (lambda c: c.update(server={"prot": 1}), "server: unknown field 'prot'"),
    (lambda c: c["models"][0].pop("deployments"), "models[0].deployments: required field is missing"),
    (lambda c: c["models"].append(dict(c["models"][0])), "models[1].name: duplicate model name 'm'"),
    (lambda c: c.update(consumers={"a": {"group": "ghost"}}), "consumers.a.group: unknown group 'ghost'"),
    (lambda c: c.update(consumers={"a": {"keys": ["sha256:abc"]}}), "consumers.a.keys[0]: sha256 keys are"),
    (lambda c: c["providers"]["ollama"].update(base_url="ftp://x"), "providers.ollama.base_url: must be an http(s) URL"),
    (lambda c: c.update(model_aliases={"claude-*": "missing"}), "model_aliases.claude-*: unknown model 'missing'"),
    (lambda c: c["providers"]["ollama"].update(max_connections=0), "providers.ollama.max_connections: must be positive"),
    (lambda c: c["providers"]["ollama"].update(pool_timeout=0), "providers.ollama.pool_timeout: must be positive"),
    (lambda c: c["providers"]["ollama"].update(failure_threshold=-1), "providers.ollama.failure_threshold: must not"),
    (lambda c: c["providers"]["ollama"].update(ejection_seconds=0), "providers.ollama.ejection_seconds: must be"),
    (lambda c: c.update(server={"max_in_flight": -1}), "server.max_in_flight: must not be negative"),
    (lambda c: c.update(metering={"journal_memory_records": 0}), "metering.journal_memory_records: must be"),
    (lambda c: c.update(server={"header_timeout": 3601}), "server.header_timeout: must be at most 3600"),
    (lambda c: c.update(limits={"replicas": 0}), "limits.replicas: must be positive"),
    (lambda c: c.update(metering={"journal_fsync_seconds": -1}), "metering.journal_fsync_seconds: must not be negative"),
    (lambda c: c["providers"]["ollama"].update(keep_alive="5m"),
     "providers.ollama.keep_alive: not used by openai (only by type ollama)"),
    (lambda c: c["providers"]["ollama"].update(tpye="openai"), "providers.ollama: unknown field 'tpye'"),
    (lambda c: c["providers"]["ollama"].pop("type"), "providers.ollama.type: required field is missing"),
])
def test_errors_name_the_field_path(mutate, expected):
    raw = minimal()
    mutate(raw)
    assert error_of(raw).startswith(expected)


def test_a_deployment_weight_needs_the_weighted_strategy():
    raw = minimal()
    raw["models"][0]["deployments"][0]["weight"] = 1  # the default: accepted
    from_mapping(raw, {})
    raw["models"][0]["deployments"][0]["weight"] = 3  # ignored by the configured order: refused
    assert error_of(raw).startswith("models[0].deployments[0].weight: only used by routing.strategy 'weighted'")
    raw["models"][0]["routing"] = {"strategy": "weighted"}
    from_mapping(raw, {})


def test_invalid_yaml_reports_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("server:\n  port: 8080\n models: [\n")
    with pytest.raises(ConfigError, match=r"invalid YAML \(line"):
        load(p)


def run_check(*args: str, env=None):
    return run_cli("check", *args, env=env)


def test_check_command_exit_codes(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("providers: {o: {type: openai, base_url: 'http://h:1/v1'}}\n"
                    "models: [{name: m, deployments: [{provider: o, model: x}]}]\n")
    r = run_check("--config", str(good))
    assert r.returncode == 0 and "config OK" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: {o: {type: openai}}\nmodels: [{name: m, deployments: [{provider: olama, model: x}]}]\n")
    r = run_check("--config", str(bad))
    assert r.returncode == 1
    assert "models[0].deployments[0].provider: unknown provider 'olama'" in r.stderr


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_pass_check(example):
    # Secrets an operator must provide are required variables; give them dummy values.
    env = {**os.environ, "GATEHOUSE_SECRET": "s", "GATEHOUSE_ADMIN_KEY": "a",
           "GATEHOUSE_DATABASE_URL": "postgresql://u:p@db:5432/gatehouse"}
    r = run_check("--config", str(example), env=env)
    assert r.returncode == 0, r.stderr
