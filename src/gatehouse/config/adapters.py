"""LoRA adapters as models: `adapter: {base, name}` on a model gives it the base model's
deployments with the upstream `model` set to the adapter's name (vLLM serves an adapter loaded
with `--lora-modules` under its own model name), and, where it sets none of its own, the base's
`routing`, `cold_start` and `context_window`. Filled in once, first among config/check.py's
CHECKS, so every later check, the routing table, pricing and routing see ordinary deployments.
Routing then prefers the deployments whose engine reports the adapter loaded (routing/lora.py).
"""
from __future__ import annotations

import msgspec

from gatehouse.config.schema import Config, ConfigError


def expand_adapters(cfg: Config) -> None:
    models = {m.name: m for m in cfg.models}
    for i, m in enumerate(cfg.models):
        a = m.adapter
        if a is None:
            continue
        path = f"models[{i}].adapter"
        base = models.get(a.base)
        if base is None:
            raise ConfigError(f"{path}.base: unknown model '{a.base}'")
        if base.adapter is not None:
            raise ConfigError(f"{path}.base: '{a.base}' is itself an adapter; name the model that serves both")
        if base is m:
            raise ConfigError(f"{path}.base: a model cannot be its own base")
        if not a.name:
            raise ConfigError(f"{path}.name: must not be empty (the adapter's model name upstream)")
        derived = [msgspec.structs.replace(d, model=a.name) for d in base.deployments]
        if m.deployments and m.deployments != derived:  # (equal: filled by an earlier check of this config)
            raise ConfigError(f"models[{i}].deployments: an adapter is served by its base's deployments; "
                              "leave deployments out")
        m.deployments = derived
        if m.routing is None:
            m.routing = base.routing
        if m.cold_start is None:
            m.cold_start = base.cold_start
        if m.context_window is None:
            m.context_window = base.context_window
