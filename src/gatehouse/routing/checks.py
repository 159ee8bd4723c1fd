"""The config checks of routing's fields (docs/routing.md) that span sections or fields: a
fallback names another model, a field is only accepted where it does something (a `weight` under
the weighted strategy, `context_window_fallbacks` on a model with a `context_window`, a cold start
on deployments that have a URL to poll). One of config/check.py's CHECKS.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from gatehouse.config.schema import ConfigError
from gatehouse.routing.strategies import model_strategy

if TYPE_CHECKING:
    from gatehouse.config.schema import Config


def check_routing(cfg: Config) -> None:
    for name, p in cfg.providers.items():
        if p.health_check is not None and not getattr(p, "base_url", ""):
            raise ConfigError(f"providers.{name}.health_check: needs the provider's base_url")
    names = {m.name for m in cfg.models}
    for i, m in enumerate(cfg.models):
        path = f"models[{i}]"
        strategy = model_strategy(cfg, m)
        for j, d in enumerate(m.deployments):
            if d.weight != 1 and strategy != "weighted":
                raise ConfigError(f"{path}.deployments[{j}].weight: only used by routing.strategy 'weighted' "
                                  f"(this model's is '{strategy}')")
            if d.metrics_url is not None:
                if strategy != "load-aware":
                    raise ConfigError(f"{path}.deployments[{j}].metrics_url: only used by routing.strategy "
                                      f"'load-aware' (this model's is '{strategy}')")
                if not d.metrics_url.startswith(("http://", "https://")):
                    raise ConfigError(f"{path}.deployments[{j}].metrics_url: must be an http(s) URL")
        rc = m.routing
        if rc is not None and strategy != "load-aware":
            for field_name in ("scrape_interval_seconds", "queue_threshold", "prefix_weight"):
                if getattr(rc, field_name) is not None:
                    raise ConfigError(f"{path}.routing.{field_name}: only used by routing.strategy 'load-aware'")
        for field_name in ("fallbacks", "context_window_fallbacks"):
            for k, name in enumerate(getattr(m, field_name)):
                if name == m.name:
                    raise ConfigError(f"{path}.{field_name}[{k}]: a model cannot be its own fallback")
                if name not in names:
                    raise ConfigError(f"{path}.{field_name}[{k}]: unknown model '{name}'")
        if m.context_window_fallbacks and m.context_window is None:
            raise ConfigError(f"{path}.context_window_fallbacks: needs the model's context_window "
                              "(the prompt is measured against it)")
        for k, d in enumerate(m.deployments):
            if d.scale_to_zero and m.cold_start is None:
                raise ConfigError(f"{path}.deployments[{k}].scale_to_zero: needs the model's cold_start "
                                  "(the hold and the poll interval it uses)")
            if d.scale_to_zero and not getattr(cfg.providers.get(d.provider), "base_url", ""):
                raise ConfigError(f"{path}.deployments[{k}].scale_to_zero: its provider has no base_url to probe")
        if m.cold_start is not None:
            if not any(getattr(cfg.providers[d.provider], "base_url", "") for d in m.deployments
                       if d.provider in cfg.providers):
                raise ConfigError(f"{path}.cold_start: none of the model's deployments has a base_url to poll")
            wake = m.cold_start.wake
            if wake is not None:
                if wake.url is None and wake.kubernetes is None:
                    raise ConfigError(f"{path}.cold_start.wake: set url, kubernetes, or both")
                if wake.url is not None and not wake.url.startswith(("http://", "https://")):
                    raise ConfigError(f"{path}.cold_start.wake.url: must be an http(s) URL")
                k8s = wake.kubernetes
                if k8s is not None and not k8s.api_url.startswith(("http://", "https://")):
                    raise ConfigError(f"{path}.cold_start.wake.kubernetes.api_url: must be an http(s) URL")
