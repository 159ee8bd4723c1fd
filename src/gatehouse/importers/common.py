"""What both importers share: providers deduplicated by their settings, secrets turned into
environment references, and the notes printed next to the result."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gatehouse.policy.keys import sha256_hex


class NotImportable(Exception):
    """The input is not a config of the named peer (or not one this importer understands)."""


@dataclass
class Draft:
    """A Gatehouse config being assembled, plus what the operator must know about it."""

    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> model (ordered)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    consumers: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_aliases: dict[str, str] = field(default_factory=dict)
    admin_key: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # VAR -> what to put there
    notes: list[str] = field(default_factory=list)
    _by_settings: dict[tuple[Any, ...], str] = field(default_factory=dict)
    _seen_secrets: dict[str, str] = field(default_factory=dict)  # sha256 of a plaintext secret -> its VAR

    def provider(self, ptype: str, hint: str, **settings: Any) -> str:
        """The name of the provider with these settings, added on first use."""
        settings = {k: v for k, v in settings.items() if v not in (None, {}, "")}
        key = (ptype, *sorted((k, repr(v)) for k, v in settings.items()))
        if key in self._by_settings:
            return self._by_settings[key]
        base = slug(hint) or ptype
        name, n = base, 2
        while name in self.providers:
            name, n = f"{base}-{n}", n + 1
        self.providers[name] = {"type": ptype, **settings}
        self._by_settings[key] = name
        return name

    def secret(self, value: str | None, var: str, what: str) -> str | None:
        """A `${VAR}` reference for a secret: taken over when the input already referenced the
        environment, else a new variable the operator must set (the value is not written)."""
        if not value:
            return None
        m = re.fullmatch(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)|\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", value.strip())
        name = (m.group(1) or m.group(2)) if m else env_name(var)
        if m is None:
            known = self._seen_secrets.get(sha256_hex(value))
            if known is not None:  # the same secret used twice: one variable
                return "${" + known + "}"
            n = 2
            while name in self.env:
                name, n = f"{env_name(var)}_{n}", n + 1
        self.env.setdefault(name, what)
        if m is None:
            self._seen_secrets[sha256_hex(value)] = name
        return "${" + name + "}"

    def deploy(self, model: str, deployment: dict[str, Any]) -> None:
        entry = self.models.setdefault(model, {"name": model, "deployments": []})
        entry["deployments"].append(deployment)

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.admin_key:
            out["admin"] = {"key": self.admin_key}
        out["providers"] = self.providers
        out["models"] = list(self.models.values())
        if self.model_aliases:
            out["model_aliases"] = self.model_aliases
        out["groups"] = self.groups
        out["consumers"] = self.consumers
        return out


def slug(text: str) -> str:
    """A group/consumer/provider name Gatehouse accepts."""
    s = re.sub(r"[^A-Za-z0-9._@-]+", "-", text).strip("-._@")
    return s[:64]


def env_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").upper() or "SECRET"


def hashed(key: str) -> str:
    """A consumer key as config stores it without the plaintext: sha256:<hex>."""
    return "sha256:" + sha256_hex(key)


def header(notes: list[str], env: dict[str, str], source: str) -> str:
    lines = [f"# Gatehouse config imported from {source} by `gatehouse import`.",
             "# Check it with: gatehouse check --config THIS_FILE"]
    if env:
        lines.append("# Set these environment variables first (their values were not copied):")
        lines += [f"#   {name}: {what}" for name, what in sorted(env.items())]
    lines += [f"# Note: {n}" for n in notes]
    return "\n".join(lines) + "\n"
