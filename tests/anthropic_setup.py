"""A gateway config for the Anthropic-facade tests: one model over the OpenAI-wire test
upstream, one over the Anthropic-wire test upstream (pass-through), one with a beta
allow-list and a pinned version, the echo model, and aliases for Claude Code's own ids."""
from __future__ import annotations

from typing import Any

from tests.conftest import base_config
from tests.upstreams import anthropic_wire

# Claude Code's default ids, as Claude Code 2.1 sends them (main model, small fast model).
CLAUDE_MAIN_ID = "claude-opus-4-8"
CLAUDE_SMALL_ID = "claude-haiku-4-5-20251001"


def anthropic_config(openai_url: str, anthropic_url: str) -> dict[str, Any]:
    cfg = base_config(openai_url)
    cfg["server"]["max_body_bytes"] = 2_000_000  # Claude Code's requests run to ~100 KB
    cfg["providers"]["claude"] = {"type": "anthropic", "base_url": anthropic_url, "api_key": anthropic_wire.API_KEY}
    cfg["providers"]["claude-strict"] = {
        "type": "anthropic", "base_url": f"{anthropic_url}/v1", "api_key": anthropic_wire.API_KEY,
        "anthropic_version": "2023-06-01", "beta_allow": ["prompt-caching-*", "token-counting-2024-11-01"],
        "read_timeout": 2.0,
    }
    cfg["providers"]["up-fast-timeout"] = {**cfg["providers"]["up"], "read_timeout": 1.0}
    cfg["models"] += [
        {"name": "claude", "deployments": [{"provider": "claude", "model": "claude-up"}]},
        {"name": "claude-strict", "deployments": [{"provider": "claude-strict", "model": "claude-strict-up"}]},
        {"name": "chat-timeout", "deployments": [{"provider": "up-fast-timeout", "model": "up-chat"}]},
    ]
    cfg["groups"]["dev"]["models"] += ["claude", "claude-strict", "chat-timeout"]
    # First match wins: the small fast model to echo, every other Claude id to "chat".
    cfg["model_aliases"] = {"claude-haiku-4-5-*": "echo", "claude-*": "chat"}
    return cfg
