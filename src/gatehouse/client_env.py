"""`gatehouse client-env`: the environment that points a client (Claude Code, OpenAI SDKs and
tools) at this gateway, printed as bash/zsh, fish or PowerShell statements."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from fnmatch import fnmatchcase

from gatehouse.config import Config

KEY_PLACEHOLDER = "REPLACE_WITH_YOUR_GATEHOUSE_KEY"
CLIENTS = ("claude-code", "openai", "codex")  # codex: client_env_codex.py
SHELLS = ("bash", "fish", "powershell")


def _bash(name: str, value: str) -> str:
    return f"export {name}='" + value.replace("'", "'\\''") + "'"


def _fish(name: str, value: str) -> str:
    return f"set -gx {name} '" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _powershell(name: str, value: str) -> str:
    return f"$env:{name} = '" + value.replace("'", "''") + "'"


_SETTERS: dict[str, Callable[[str, str], str]] = {"bash": _bash, "fish": _fish, "powershell": _powershell}
_UNSETTERS: dict[str, Callable[[str], str]] = {
    "bash": lambda name: f"unset {name}",
    "fish": lambda name: f"set -e {name}",
    "powershell": lambda name: f"Remove-Item Env:{name} -ErrorAction SilentlyContinue",
}

# Every variable `client-env` sets per client: what --remote removes and status reports on.
GATEWAY_VARIABLES = {
    "claude-code": ("ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_MODEL", "ANTHROPIC_SMALL_FAST_MODEL",
                    "ANTHROPIC_DEFAULT_HAIKU_MODEL", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"),
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_KEY"),
}


def variables(client: str, base_url: str, key: str | None, model: str | None,
              small_model: str | None) -> list[tuple[str, str]]:
    base_url = base_url.rstrip("/")
    key = key or KEY_PLACEHOLDER
    if client == "openai":
        return [("OPENAI_BASE_URL", f"{base_url}/v1"), ("OPENAI_API_KEY", key)]
    out = [("ANTHROPIC_BASE_URL", base_url), ("ANTHROPIC_AUTH_TOKEN", key)]
    if model:
        out.append(("ANTHROPIC_MODEL", model))
    small = small_model or model
    if small:
        # Claude Code's model for quick side tasks (titles, summaries); newer releases read
        # ANTHROPIC_DEFAULT_HAIKU_MODEL, older ones ANTHROPIC_SMALL_FAST_MODEL.
        out += [("ANTHROPIC_SMALL_FAST_MODEL", small), ("ANTHROPIC_DEFAULT_HAIKU_MODEL", small)]
    # Keep Claude Code from calling Anthropic's telemetry and update endpoints directly.
    out.append(("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"))
    return out


# Model ids Claude Code asks for by default (main model and the small fast one).
CLAUDE_DEFAULT_IDS = ("claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805", "claude-haiku-4-5-20251001")


def default_claude_model(cfg: Config) -> tuple[str | None, str | None]:
    """(model to export, note). When `model_aliases` already maps Claude Code's own ids, no
    model needs exporting; otherwise the first configured model is the default."""
    if cfg.model_aliases and all(any(fnmatchcase(i, p) for p in cfg.model_aliases) for i in CLAUDE_DEFAULT_IDS):
        return None, "model_aliases maps Claude Code's own model ids; add --model NAME to pin one instead."
    return (cfg.models[0].name if cfg.models else None), None


def render(client: str, shell: str, base_url: str, key: str | None = None, model: str | None = None,
           small_model: str | None = None, note: str | None = None) -> str:
    setter = _SETTERS[shell]
    base_url = base_url.rstrip("/")
    comment = "#"
    lines = [f"{comment} {'Claude Code' if client == 'claude-code' else 'OpenAI clients'} -> gatehouse at {base_url}"]
    if note:
        lines.append(f"{comment} {note}")
    if not key:
        lines.append(f"{comment} Replace {KEY_PLACEHOLDER}: create a key with `gatehouse keys create <your-name>`.")
    lines += [setter(name, value) for name, value in variables(client, base_url, key, model, small_model)]
    return "\n".join(lines) + "\n"


def render_remote(client: str, shell: str) -> str:
    """Statements that undo `client-env CLIENT`: the client talks to its vendor directly again
    (Claude Code with its own login or ANTHROPIC_API_KEY, which is left alone)."""
    unset = _UNSETTERS[shell]
    target = "Anthropic directly (your Claude login or ANTHROPIC_API_KEY)" if client == "claude-code" \
        else "OpenAI directly (set OPENAI_API_KEY to your OpenAI key)"
    lines = [f"# {'Claude Code' if client == 'claude-code' else 'OpenAI clients'} -> {target}"]
    lines += [unset(name) for name in GATEWAY_VARIABLES[client]]
    return "\n".join(lines) + "\n"


def port_forward_hint(namespace: str, service: str, local_port: int) -> str:
    """The kubectl command that makes an in-cluster gateway reachable at 127.0.0.1:local_port
    (the chart's Service port is named http)."""
    return f"kubectl -n {namespace} port-forward svc/{service} {local_port}:http"


def _masked(value: str | None) -> str:
    if not value:
        return "not set"
    if value == KEY_PLACEHOLDER:
        return "the placeholder (replace it)"
    return "set"


def status(env: Mapping[str, str]) -> str:
    """What the current shell points each client at, without printing any key."""
    lines = []
    base = env.get("ANTHROPIC_BASE_URL")
    if base:
        extra = [f"token {_masked(env.get('ANTHROPIC_AUTH_TOKEN'))}"]
        extra += [f"{name}={env[name]}" for name in GATEWAY_VARIABLES["claude-code"][2:5] if env.get(name)]
        lines.append(f"claude-code: gateway {base} ({', '.join(extra)})")
    else:
        lines.append("claude-code: Anthropic directly (ANTHROPIC_BASE_URL not set)")
    base = env.get("OPENAI_BASE_URL")
    if base:
        lines.append(f"openai: gateway {base} (key {_masked(env.get('OPENAI_API_KEY'))})")
    else:
        lines.append("openai: OpenAI directly (OPENAI_BASE_URL not set)")
    return "\n".join(lines) + "\n"
