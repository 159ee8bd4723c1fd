"""`gatehouse client-env codex`: a Codex config.toml for the gateway, and a generated
model_catalog_json of the models a key may use (with their context windows, from GET
/v1/models). The catalog is checked by the real Codex CLI when GATEHOUSE_CODEX_BIN is set."""
from __future__ import annotations

import json
import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ALICE_KEY, BOB_KEY, base_config
from tests.in_process import CliResult, run_cli
from tests.support import Gatehouse
from tests.upstreams.harness import ServerThread

CODEX = os.environ.get("GATEHOUSE_CODEX_BIN", "")
needs_codex = pytest.mark.skipif(not CODEX or not os.path.exists(CODEX), reason="set GATEHOUSE_CODEX_BIN")


def client_env_codex(*args: str, home: Path, ok: bool = True) -> CliResult:
    env = {**os.environ, "GATEHOUSE_HOME": str(home), "GATEHOUSE_OLLAMA_URL": "off"}
    done = run_cli("client-env", "codex", *args, env=env)
    assert (done.returncode == 0) == ok, done.stderr
    return done


def windowed_config(upstream_url: str) -> dict[str, Any]:
    cfg = base_config(upstream_url)
    cfg["models"][0]["context_window"] = 131072  # chat
    cfg["models"][3]["context_window"] = 8192  # restricted: only bob's group has it
    return cfg


def test_config_file_models_make_a_codex_provider_block(tmp_path: Path) -> None:
    cfg = tmp_path / "gh.yaml"
    cfg.write_text(yaml.safe_dump({
        "server": {"public_url": "https://gw.corp.test/"}, "providers": {"e": {"type": "echo"}},
        "models": [{"name": "coder", "context_window": 131072, "deployments": [{"provider": "e", "model": "e"}]},
                   {"name": "vectors", "embeddings": True, "deployments": [{"provider": "e", "model": "e"}]}]}))
    out = client_env_codex("--config", str(cfg), home=tmp_path).stdout
    toml = tomllib.loads(out)
    assert toml["model"] == "coder" and toml["model_provider"] == "gatehouse"
    assert toml["model_context_window"] == 131072 and "model_catalog_json" not in toml
    assert toml["model_providers"]["gatehouse"] == {"name": "Gatehouse", "base_url": "https://gw.corp.test/v1",
                                                    "env_key": "GATEHOUSE_API_KEY", "wire_api": "responses"}
    assert "vectors" not in out and "gatehouse keys create" in out


def test_models_carry_their_context_window(start_gatehouse: Any, openai_upstream: ServerThread, tmp_path: Path) -> None:
    gh: Gatehouse = start_gatehouse(windowed_config(openai_upstream.url))
    models = httpx.get(gh.url + "/v1/models", headers={"Authorization": f"Bearer {BOB_KEY}"}, timeout=10).json()["data"]
    windows = {m["id"]: m.get("context_window") for m in models}
    assert windows["chat"] == 131072 and windows["restricted"] == 8192 and windows["echo"] is None
    one = httpx.get(gh.url + "/v1/models/chat", headers={"Authorization": f"Bearer {BOB_KEY}"}, timeout=10).json()
    assert one["context_window"] == 131072
    # client-env with a key lists what that key may use, as the gateway says.
    toml = tomllib.loads(client_env_codex("--url", gh.url, "--key", ALICE_KEY, home=tmp_path).stdout)
    assert toml["model"] == "chat" and toml["model_context_window"] == 131072
    assert toml["model_providers"]["gatehouse"]["base_url"] == gh.url + "/v1"
    out = client_env_codex("--url", gh.url, "--key", ALICE_KEY, "--model", "restricted", home=tmp_path, ok=False)
    assert "restricted" in out.stderr and ALICE_KEY not in out.stderr + out.stdout
    wrong = client_env_codex("--url", gh.url, "--key", "not-a-key", home=tmp_path, ok=False)
    assert "401" in wrong.stderr and "not-a-key" not in wrong.stderr and "Traceback" not in wrong.stderr


def test_a_catalog_needs_a_codex_to_clone(tmp_path: Path) -> None:
    cfg = tmp_path / "gh.yaml"
    cfg.write_text(yaml.safe_dump({"providers": {"e": {"type": "echo"}},
                                   "models": [{"name": "coder", "deployments": [{"provider": "e", "model": "e"}]}]}))
    done = client_env_codex("--config", str(cfg), "--catalog", str(tmp_path / "c.json"), "--codex-bin",
                            str(tmp_path / "no-codex"), home=tmp_path, ok=False)
    assert "cannot run" in done.stderr and "Traceback" not in done.stderr and not (tmp_path / "c.json").exists()


@needs_codex
def test_codex_reads_the_generated_catalog(start_gatehouse: Any, openai_upstream: ServerThread, tmp_path: Path) -> None:
    gh: Gatehouse = start_gatehouse(windowed_config(openai_upstream.url))
    home = tmp_path / "codex-home"
    home.mkdir()
    catalog = home / "gatehouse-models.json"
    out = client_env_codex("--url", gh.url, "--key", BOB_KEY, "--catalog", str(catalog), "--codex-bin", CODEX,
                           home=tmp_path).stdout
    (home / "config.toml").write_text(out)
    assert tomllib.loads(out)["model_catalog_json"] == str(catalog)
    done = subprocess.run([CODEX, "debug", "models"], capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "CODEX_HOME": str(home)})
    assert done.returncode == 0, done.stderr[-2000:]
    listed = {m["slug"]: m.get("context_window") for m in json.loads(done.stdout)["models"]}
    assert listed == {"chat": 131072, "embed": None, "echo": None, "restricted": 8192}  # bob's models, nothing else
