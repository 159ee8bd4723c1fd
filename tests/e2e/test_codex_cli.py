"""The real Codex CLI (`codex exec`) through the gateway's Responses API to a chat-completions
upstream: a one-tool-step task (the model asks for a shell command, Codex runs it, the model
finishes). Set GATEHOUSE_CODEX_BIN to a codex binary (`make test` installs one from npm)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN_KEY, ALICE_KEY
from tests.support import Gatehouse
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
        (home / "config.toml").write_text(
            'model = "coder"\nmodel_provider = "gatehouse"\n\n[model_providers.gatehouse]\nname = "Gatehouse"\n'
            f'base_url = "{gh.url}/v1"\nenv_key = "GATEHOUSE_API_KEY"\nwire_api = "responses"\n')
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "CODEX_HOME": str(home),
               "GATEHOUSE_API_KEY": ALICE_KEY, "NO_COLOR": "1"}
        proc = subprocess.run([CODEX, "exec", "--skip-git-repo-check", "--sandbox", "workspace-write",
                               "Create proof.txt"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert (work / "proof.txt").read_text().strip() == "gatehouse-ok"
        assert "Done." in proc.stdout + proc.stderr
        turns = [r.json() for r in upstream.recorder.requests]
        assert len(turns) == 2 and any(m["role"] == "tool" for m in turns[1]["messages"])
        assert all(t["model"] == "Qwen/Qwen3-Coder" for t in turns)
