"""`gatehouse client-env codex`: a Codex CLI `config.toml` that points Codex at the gateway's
Responses API, and optionally a generated `model_catalog_json` for the gateway's models.

The models are the ones the key may use, as `GET /v1/models` lists them (with their
`context_window`), when a key is given; else the chat models of the config file. Codex's model
catalog needs instructions of Codex's own version: the entries take them from the installed
Codex's bundled catalog (`codex debug models --bundled`), and are otherwise plain (no
OpenAI-only tool modes), with the gateway's model names and context windows.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from gatehouse.config import Config

PROVIDER_ID = "gatehouse"
ENV_KEY = "GATEHOUSE_API_KEY"


class ClientEnvError(Exception):
    """A problem to print instead of a config (no trace, never the key)."""


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's


def models_from_config(cfg: Config) -> list[dict[str, Any]]:
    return [{"id": m.name, "context_window": m.context_window, "description": m.description}
            for m in cfg.models if not m.embeddings]


def models_from_gateway(base_url: str, key: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The models this key may use, from the running gateway's GET /v1/models."""
    req = urllib.request.Request(f"{base_url.rstrip('/')}/v1/models", headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raise ClientEnvError(f"the gateway at {base_url} answered GET /v1/models with {e.code}: "
                             "check the key") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise ClientEnvError(f"cannot list the models at {base_url}: {reason}") from None
    return [{"id": str(m["id"]), "context_window": m.get("context_window")}
            for m in body.get("data", []) if isinstance(m, dict) and "id" in m]


def codex_template(codex_bin: str | None) -> dict[str, Any]:
    """The entry of the installed Codex's bundled catalog whose instructions and shapes a
    catalog entry borrows: the first listed that uses no OpenAI-only tool mode, else the first."""
    exe = codex_bin or shutil.which("codex")
    if not exe:
        raise ClientEnvError("a model catalog is made from the installed Codex's own (its instructions differ by "
                             "version): put `codex` on PATH or pass --codex-bin")
    with tempfile.TemporaryDirectory() as home:  # not the user's config: it may name a catalog already
        try:
            done = subprocess.run([exe, "debug", "models", "--bundled"], capture_output=True, text=True, timeout=60,
                                  env={**os.environ, "CODEX_HOME": home, "HOME": home})
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ClientEnvError(f"cannot run {exe}: {e}") from None
    try:
        models = [m for m in json.loads(done.stdout)["models"] if isinstance(m, dict) and m.get("base_instructions")]
    except (ValueError, KeyError, TypeError):
        models = []
    if not models:
        raise ClientEnvError(f"`{exe} debug models --bundled` did not print a model catalog "
                             "(Codex 0.171 or newer is needed)")
    ranked = sorted(models, key=lambda m: (m.get("visibility") != "list", m.get("priority", 0)))
    plain = [m for m in ranked if not m.get("tool_mode") and not m.get("use_responses_lite")]
    return dict((plain or ranked)[0])


def catalog(models: list[dict[str, Any]], template: dict[str, Any]) -> dict[str, Any]:
    """Entries that describe a model Codex does not know as plainly as Codex treats unknown
    models (no OpenAI-only tool modes, services or upgrades), with the template's instructions."""
    out = []
    for priority, m in enumerate(models):
        entry: dict[str, Any] = {
            "slug": m["id"], "display_name": m["id"], "description": m.get("description") or f"{m['id']} via Gatehouse",
            "base_instructions": template["base_instructions"],
            "supported_reasoning_levels": [{"effort": e, "description": f"{e} reasoning effort"}
                                           for e in ("low", "medium", "high")],
            "default_reasoning_level": "medium", "shell_type": template.get("shell_type", "shell_command"),
            "visibility": "list", "supported_in_api": True, "priority": priority, "support_verbosity": False,
            "truncation_policy": template.get("truncation_policy") or {"mode": "tokens", "limit": 10000},
            "experimental_supported_tools": [], "input_modalities": ["text", "image"]}
        if m.get("context_window"):
            entry["context_window"] = m["context_window"]
        out.append(entry)
    return {"models": out}


def render_config(base_url: str, models: list[dict[str, Any]], model: str | None, catalog_path: Path | None,
                  key_given: bool) -> str:
    base_url = base_url.rstrip("/")
    chosen = model or (models[0]["id"] if models else None)
    window = next((m.get("context_window") for m in models if m["id"] == chosen), None)
    lines = [f"# ~/.codex/config.toml (or $CODEX_HOME/config.toml): Codex CLI -> gatehouse at {base_url}",
             f"# Codex reads the key from ${ENV_KEY}: export {ENV_KEY}=" +
             ("<the key you gave>" if key_given else "<your key>  (make one with `gatehouse keys create <your-name>`)")]
    if models:
        lines.append("# Models: " + ", ".join(m["id"] for m in models))
    if chosen:
        lines.append(f"model = {_toml_str(chosen)}")
    lines.append(f"model_provider = {_toml_str(PROVIDER_ID)}")
    if catalog_path is not None:  # the catalog has every model's window
        lines.append(f"model_catalog_json = {_toml_str(str(catalog_path))}")
    elif window:  # the default model's window (Codex guesses for models it does not know)
        lines.append(f"model_context_window = {int(window)}")
    lines += ["", f"[model_providers.{PROVIDER_ID}]", 'name = "Gatehouse"', f"base_url = {_toml_str(base_url + '/v1')}",
              f"env_key = {_toml_str(ENV_KEY)}", 'wire_api = "responses"']
    return "\n".join(lines) + "\n"


def generate(base_url: str, key: str | None, cfg: Config | None, model: str | None, catalog_path: str | None,
             codex_bin: str | None) -> str:
    """The config.toml text; writes the catalog to `catalog_path` when one is asked for."""
    models = models_from_gateway(base_url, key) if key else models_from_config(cfg) if cfg else []
    if model and models and model not in {m["id"] for m in models}:
        raise ClientEnvError(f"the model '{model}' is not one of: {', '.join(m['id'] for m in models)}")
    path: Path | None = None
    if catalog_path:
        if not models:
            raise ClientEnvError("no models to put in a catalog: pass --key (or --config)")
        path = Path(catalog_path).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(catalog(models, codex_template(codex_bin)), indent=2) + "\n")
    return render_config(base_url, models, model, path, key is not None)
