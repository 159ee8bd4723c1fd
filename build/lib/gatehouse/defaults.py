"""The embedded default configuration: SQLite in the data dir, the echo model, and any
models a local Ollama serves (detected at start from its /api/tags)."""
from __future__ import annotations

import json
import logging
import os
import urllib.request
from pathlib import Path
from typing import Any

from gatehouse.config import Config, from_mapping

log = logging.getLogger("gatehouse")

OLLAMA_URL = "http://127.0.0.1:11434"


def detect_ollama(url: str, timeout: float = 0.5) -> list[str]:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/tags", timeout=timeout) as resp:
            data = json.loads(resp.read())
    except (OSError, ValueError):
        return []
    names = [m.get("name") or m.get("model") for m in data.get("models", []) if isinstance(m, dict)]
    return [n for n in names if isinstance(n, str) and n]


def embedded_mapping(data_dir: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    env = dict(os.environ) if env is None else env
    raw: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 8080},
        "store": {"url": f"sqlite:///{data_dir / 'gatehouse.db'}"},
        "providers": {"echo": {"type": "echo"}},
        "models": [{"name": "echo", "deployments": [{"provider": "echo", "model": "echo",
                                                     "input_per_mtok": 0, "output_per_mtok": 0}],
                    "description": "built-in deterministic echo model"}],
    }
    if env.get("GATEHOUSE_ADMIN_KEY"):
        raw["admin"] = {"key": env["GATEHOUSE_ADMIN_KEY"]}
    ollama = env.get("GATEHOUSE_OLLAMA_URL", OLLAMA_URL)
    if ollama.lower() not in ("", "off", "none"):
        names = detect_ollama(ollama)
        if names:
            raw["providers"]["ollama"] = {"type": "openai", "base_url": f"{ollama.rstrip('/')}/v1"}
            raw["models"].extend(
                {"name": n, "private": True, "deployments": [{"provider": "ollama", "model": n}]} for n in names
            )
            log.info("found a local Ollama with %d models", len(names))
    return raw


def embedded_config(data_dir: Path) -> Config:
    return from_mapping(embedded_mapping(data_dir), env={})
