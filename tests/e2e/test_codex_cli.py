"""The real Codex CLI (`codex exec`) through the gateway's Responses API to a chat-completions
upstream: a one-tool-step task (the model asks for a shell command, Codex runs it, the model
finishes), configured by what `gatehouse client-env codex` generates. Set GATEHOUSE_CODEX_BIN to a codex binary (`make test` installs one from npm)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN_KEY, ALICE_KEY
from tests.support import Gatehouse, run_cli
from tests.upstreams import codex_chat
from tests.upstreams.harness import ServerThread

CODEX = os.environ.get("GATEHOUSE_CODEX_BIN", "")
pytestmark = pytest.mark.skipif(not CODEX or not os.path.exists(CODEX), reason="set GATEHOUSE_CODEX_BIN to run Codex")


def test_codex_exec_completes_a_tool_step_through_the_gateway(tmp_path: Path, start_gatehouse: Any) -> None:
    with ServerThread(codex_chat.make_app) as upstream:
        gh: Gatehouse = start_gatehouse({
            "admin": {"key": ADMIN_KEY},
            "providers": {"vllm": {"type": "openai", "base_url": f"{upstream.url}/v1"}},
            "models": [{"name": "coder", "deployments": [{"provider": "vllm", "model": "Qwen/Qwen3-Coder"}]}],
            "groups": {"dev": {"models": ["coder"]}},
            "consumers": {"alice": {"group": "dev", "keys": [ALICE_KEY]}},
        })
        home, work = tmp_path / "codex-home", tmp_path / "work"
        home.mkdir()
        work.mkdir()
        # The config `gatehouse client-env codex` prints, with the catalog it generates for alice's models.
        generated = run_cli("client-env", "codex", "--url", gh.url, "--key", ALICE_KEY,
                            "--catalog", str(home / "gatehouse-models.json"), "--codex-bin", CODEX,
                            env={**os.environ, "GATEHOUSE_HOME": str(tmp_path)})
        assert generated.returncode == 0, generated.stderr
        (home / "config.toml").write_text(generated.stdout)
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "CODEX_HOME": str(home),
               "GATEHOUSE_API_KEY": ALICE_KEY, "NO_COLOR": "1"}
        proc = subprocess.run([CODEX, "exec", "--skip-git-repo-check", "--sandbox", "workspace-write",
                               "Create proof.txt"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert (work / "proof.txt").read_text().strip() == "gatehouse-ok"
        assert "Done." in proc.stdout + proc.stderr
        assert "metadata" not in proc.stderr  # the catalog knows the model (no "Model metadata ... not found")
        turns = [r.json() for r in upstream.recorder.requests]
        assert len(turns) == 2 and any(m["role"] == "tool" for m in turns[1]["messages"])
        assert all(t["model"] == "Qwen/Qwen3-Coder" for t in turns)
        catalog = json.loads((home / "gatehouse-models.json").read_text())["models"]
        assert [m["slug"] for m in catalog] == ["coder"]  # alice's models
        system = json.dumps(turns[0]["messages"][0])
        assert json.dumps(catalog[0]["base_instructions"][:300])[1:-1] in system  # Codex's own instructions, kept
