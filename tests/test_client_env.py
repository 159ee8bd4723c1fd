"""`gatehouse client-env`: the exports that point Claude Code and OpenAI clients at the
gateway, in bash, fish and PowerShell syntax. The bash output is evaluated by a real bash."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from gatehouse.client_env import KEY_PLACEHOLDER
from tests.in_process import run_cli


def client_env(*args: str, home: Path) -> str:
    env = {**os.environ, "GATEHOUSE_HOME": str(home), "GATEHOUSE_OLLAMA_URL": "off"}
    done = run_cli("client-env", *args, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def bash_env(script: str, *names: str) -> dict[str, str]:
    """Evaluate the printed exports in bash and read the variables back."""
    probe = "; ".join(f'printf "%s\\0" "${name}"' for name in names)
    out = subprocess.run(["bash", "-c", f"{script}\n{probe}"], capture_output=True, text=True, check=True,
                         env={"PATH": os.environ["PATH"]}).stdout
    return dict(zip(names, out.split("\0")))


CLAUDE_VARS = ("ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_MODEL", "ANTHROPIC_SMALL_FAST_MODEL",
               "ANTHROPIC_DEFAULT_HAIKU_MODEL", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC")


def test_claude_code_bash(tmp_path):
    out = client_env("claude-code", "--model", "qwen3-coder:32b", "--url", "https://llm.example.com/",
                     "--key", "gh-it's-$secret", home=tmp_path)
    got = bash_env(out, *CLAUDE_VARS)
    assert got == {"ANTHROPIC_BASE_URL": "https://llm.example.com", "ANTHROPIC_AUTH_TOKEN": "gh-it's-$secret",
                   "ANTHROPIC_MODEL": "qwen3-coder:32b", "ANTHROPIC_SMALL_FAST_MODEL": "qwen3-coder:32b",
                   "ANTHROPIC_DEFAULT_HAIKU_MODEL": "qwen3-coder:32b", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}


def test_openai_bash_defaults_to_public_url_and_a_placeholder_key(tmp_path):
    cfg = tmp_path / "gh.yaml"
    cfg.write_text(yaml.safe_dump({"server": {"public_url": "https://gw.corp.test"},
                                   "providers": {"e": {"type": "echo"}},
                                   "models": [{"name": "echo", "deployments": [{"provider": "e", "model": "e"}]}]}))
    out = client_env("openai", "--config", str(cfg), home=tmp_path)
    assert "gatehouse keys create" in out
    assert bash_env(out, "OPENAI_BASE_URL", "OPENAI_API_KEY") == {
        "OPENAI_BASE_URL": "https://gw.corp.test/v1", "OPENAI_API_KEY": KEY_PLACEHOLDER}


def test_claude_code_defaults_from_config(tmp_path):
    base = {"server": {"host": "0.0.0.0", "port": 9999}, "providers": {"e": {"type": "echo"}},
            "models": [{"name": "first", "deployments": [{"provider": "e", "model": "e"}]}]}
    cfg = tmp_path / "a.yaml"
    cfg.write_text(yaml.safe_dump(base))
    got = bash_env(client_env("claude-code", "--config", str(cfg), home=tmp_path), "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL")
    assert got == {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9999", "ANTHROPIC_MODEL": "first"}
    # With aliases covering Claude Code's own ids, no model needs pinning.
    cfg.write_text(yaml.safe_dump({**base, "model_aliases": {"*": "first"}}))
    out = client_env("claude-code", "--config", str(cfg), home=tmp_path)
    assert "ANTHROPIC_MODEL" not in out and "model_aliases" in out


@pytest.mark.parametrize("shell,expected", [
    ("fish", ["set -gx ANTHROPIC_BASE_URL 'http://gw:8080'", "set -gx ANTHROPIC_AUTH_TOKEN 'k\\'1'",
              "set -gx ANTHROPIC_MODEL 'm'"]),
    ("powershell", ["$env:ANTHROPIC_BASE_URL = 'http://gw:8080'", "$env:ANTHROPIC_AUTH_TOKEN = 'k''1'",
                    "$env:ANTHROPIC_MODEL = 'm'"]),
])
def test_other_shells(tmp_path, shell, expected):
    out = client_env("claude-code", "--shell", shell, "--url", "http://gw:8080", "--key", "k'1", "--model", "m",
                     home=tmp_path)
    for line in expected:
        assert line in out.splitlines()


def test_unknown_client_is_refused(tmp_path):
    done = run_cli("client-env", "emacs", env={**os.environ, "GATEHOUSE_HOME": str(tmp_path)})
    assert done.returncode == 2 and "claude-code" in done.stderr


def run_client_env(*args: str, home: Path, env: dict[str, str] | None = None) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_", "CLAUDE_CODE_"))}
    done = run_cli("client-env", *args,
                   env={**clean, "GATEHOUSE_HOME": str(home), "GATEHOUSE_OLLAMA_URL": "off", **(env or {})})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_remote_undoes_the_gateway_switch_in_bash(tmp_path):
    on = run_client_env("claude-code", "--url", "https://gw.test", "--key", "k1", "--model", "m", home=tmp_path)
    off = run_client_env("claude-code", "--remote", home=tmp_path)
    probe = "; ".join(f'echo "{n}=${{{n}+set}}"' for n in (*CLAUDE_VARS, "ANTHROPIC_API_KEY"))
    out = subprocess.run(["bash", "-c", f"export ANTHROPIC_API_KEY=sk-own\n{on}\n{off}\n{probe}"], capture_output=True,
                         text=True, check=True, env={"PATH": os.environ["PATH"]}).stdout.split()
    # Every variable the switch set is gone; the user's own Anthropic key is left alone.
    assert out == [f"{n}=" for n in CLAUDE_VARS] + ["ANTHROPIC_API_KEY=set"]
    assert "Anthropic directly" in off.splitlines()[0]


@pytest.mark.parametrize("client,shell,expected", [
    ("claude-code", "fish", ["set -e ANTHROPIC_BASE_URL", "set -e ANTHROPIC_AUTH_TOKEN"]),
    ("claude-code", "powershell", ["Remove-Item Env:ANTHROPIC_BASE_URL -ErrorAction SilentlyContinue"]),
    ("openai", "bash", ["unset OPENAI_BASE_URL", "unset OPENAI_API_KEY"]),
])
def test_remote_other_shells_and_openai(tmp_path, client, shell, expected):
    lines = run_client_env(client, "--remote", "--shell", shell, home=tmp_path).splitlines()
    for line in expected:
        assert line in lines


def test_status_says_where_the_shell_points_without_printing_keys(tmp_path):
    out = run_client_env("status", home=tmp_path, env={
        "ANTHROPIC_BASE_URL": "https://gw.test", "ANTHROPIC_AUTH_TOKEN": "gh-secret-token-123",
        "ANTHROPIC_MODEL": "qwen3-coder:30b", "OPENAI_BASE_URL": "https://gw.test/v1", "OPENAI_API_KEY": KEY_PLACEHOLDER})
    assert "gh-secret-token-123" not in out
    assert out.splitlines() == [
        "claude-code: gateway https://gw.test (token set, ANTHROPIC_MODEL=qwen3-coder:30b)",
        "openai: gateway https://gw.test/v1 (key the placeholder (replace it))",
    ]
    assert run_client_env("status", home=tmp_path).splitlines() == [
        "claude-code: Anthropic directly (ANTHROPIC_BASE_URL not set)",
        "openai: OpenAI directly (OPENAI_BASE_URL not set)",
    ]


def test_port_forward_points_at_localhost_and_prints_the_kubectl_command(tmp_path):
    out = run_client_env("claude-code", "--port-forward", "--model", "m", "--key", "k", home=tmp_path)
    assert "# Run in another terminal: kubectl -n gatehouse port-forward svc/gatehouse 8080:http" in out.splitlines()
    assert bash_env(out, "ANTHROPIC_BASE_URL")["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8080"
    out = run_client_env("openai", "--port-forward", "llm/gw", "--local-port", "18080", home=tmp_path)
    assert "# Run in another terminal: kubectl -n llm port-forward svc/gw 18080:http" in out.splitlines()
    assert bash_env(out, "OPENAI_BASE_URL")["OPENAI_BASE_URL"] == "http://127.0.0.1:18080/v1"


def test_local_default_url_comes_with_a_port_forward_hint(tmp_path):
    cfg = tmp_path / "a.yaml"
    cfg.write_text(yaml.safe_dump({"providers": {"e": {"type": "echo"}},
                                   "models": [{"name": "first", "deployments": [{"provider": "e", "model": "e"}]}]}))
    out = run_client_env("openai", "--config", str(cfg), home=tmp_path)
    assert "--port-forward" in out and "kubectl -n gatehouse port-forward svc/gatehouse 8080:http" in out
    assert bash_env(out, "OPENAI_BASE_URL")["OPENAI_BASE_URL"] == "http://127.0.0.1:8080/v1"
