"""The checks a config needs beyond its types: references between sections (a deployment's
provider, a consumer's group, a guardrail policy's name), ranges msgspec does not express, and
each provider type's own rules. Each failure is a ConfigError naming the field path.
"""
from __future__ import annotations

import re

from gatehouse.config import Config, ConfigError, ProviderConfig
from gatehouse.policy.guardrails.config import check_parallel, check_policies


def _check_upstream_limits(path: str, prov: ProviderConfig) -> None:
    if prov.max_connections <= 0:
        raise ConfigError(f"{path}.max_connections: must be positive")
    if prov.failure_threshold < 0:
        raise ConfigError(f"{path}.failure_threshold: must not be negative (0 = never eject)")
    for name in ("first_byte_timeout", "pool_timeout"):
        if getattr(prov, name) <= 0:
            raise ConfigError(f"{path}.{name}: must be positive")
    if prov.ejection_seconds <= 0 or prov.max_ejection_seconds <= 0:
        field_name = "ejection_seconds" if prov.ejection_seconds <= 0 else "max_ejection_seconds"
        raise ConfigError(f"{path}.{field_name}: must be positive")


def check_references(cfg: Config) -> None:
    from gatehouse.providers import registry  # late: providers import config types

    for name, prov in cfg.providers.items():
        path = f"providers.{name}"
        cls = registry.PROVIDERS.get(prov.type)
        if cls is None:
            known = ", ".join(sorted(registry.PROVIDERS))
            raise ConfigError(f"{path}.type: unknown provider type '{prov.type}' (known: {known})")
        if prov.responses_api and prov.type != "openai":
            raise ConfigError(f"{path}.responses_api: only an openai provider can speak the Responses API")
        problem = cls.check_config(prov)
        if problem:
            field_name, message = problem
            raise ConfigError(f"{path}.{field_name}: {message}")
    seen: set[str] = set()
    for i, model in enumerate(cfg.models):
        path = f"models[{i}]"
        if not model.name:
            raise ConfigError(f"{path}.name: must not be empty")
        if model.name in seen:
            raise ConfigError(f"{path}.name: duplicate model name '{model.name}'")
        seen.add(model.name)
        if not model.deployments:
            raise ConfigError(f"{path}.deployments: at least one deployment is required")
        for j, dep in enumerate(model.deployments):
            if dep.provider not in cfg.providers:
                raise ConfigError(
                    f"{path}.deployments[{j}].provider: unknown provider '{dep.provider}'"
                )
    for pattern, target in cfg.model_aliases.items():
        if target not in seen:
            raise ConfigError(f"model_aliases.{pattern}: unknown model '{target}'")
    from gatehouse.policy.limits_config import check_access_config  # late: it imports config types

    check_access_config(cfg)  # names first: later messages quote them
    default = cfg.access.default_group
    if default is not None and default not in cfg.groups:
        raise ConfigError(f"access.default_group: unknown group '{default}' (it must be defined in groups)")
    if cfg.access.unknown_consumers == "default_group" and default is None:
        raise ConfigError("access.unknown_consumers: 'default_group' needs access.default_group set")
    for name, consumer in cfg.consumers.items():
        path = f"consumers.{name}"
        if consumer.group is not None and consumer.group not in cfg.groups:
            raise ConfigError(f"{path}.group: unknown group '{consumer.group}'")
        for k, key in enumerate(consumer.keys):
            if not key:
                raise ConfigError(f"{path}.keys[{k}]: empty key")
            if key.startswith("sha256:") and not re.fullmatch(r"sha256:[0-9a-f]{64}", key):
                raise ConfigError(f"{path}.keys[{k}]: sha256 keys are 'sha256:' + 64 hex digits")
        if consumer.group is None and default is None:
            raise ConfigError(f"{path}.group: required: name the consumer's group, or set access.default_group "
                              "(a consumer without a group gets nothing else)")
    from gatehouse.tls import check_tls  # late: it imports config types

    check_tls(cfg)
    if cfg.server.max_body_bytes <= 0:
        raise ConfigError("server.max_body_bytes: must be positive")
    for name in ("header_timeout", "body_timeout"):
        if not 0 < getattr(cfg.server, name) <= 3600:
            raise ConfigError(f"server.{name}: must be more than 0 and at most 3600 seconds")
    if cfg.server.max_in_flight < 0:
        raise ConfigError("server.max_in_flight: must not be negative (0 = no cap)")
    for name, prov in cfg.providers.items():
        _check_upstream_limits(f"providers.{name}", prov)
    from gatehouse.metering.pricing import check_prices  # late: pricing imports config types

    check_prices(cfg)
    if cfg.metering.journal_memory_records <= 0:
        raise ConfigError("metering.journal_memory_records: must be positive")
    if cfg.metering.batch_size <= 0:
        raise ConfigError("metering.batch_size: must be positive")
    if cfg.metering.journal_fsync_seconds < 0:
        raise ConfigError("metering.journal_fsync_seconds: must not be negative")
    if cfg.store.pool_size <= 0:
        raise ConfigError("store.pool_size: must be positive")
    _check_guardrails(cfg)
    _check_cache(cfg)


def _check_cache(cfg: Config) -> None:
    """A redis-backed cache needs store.redis_url (docs/cache.md)."""
    blocks = [(f"groups.{n}.cache", g.cache) for n, g in cfg.groups.items()]
    blocks += [(f"models[{i}].cache", m.cache) for i, m in enumerate(cfg.models)]
    for path, c in blocks:
        if c is not None and c.enabled and c.backend == "redis" and not cfg.store.redis_url:
            raise ConfigError(f"{path}.backend: redis needs store.redis_url")
        if c is not None and c.max_entry_bytes > c.max_bytes:
            raise ConfigError(f"{path}.max_entry_bytes: must not exceed max_bytes")
        if c is not None and c.semantic is not None and c.semantic.model not in {m.name for m in cfg.models}:
            raise ConfigError(f"{path}.semantic.model: unknown model '{c.semantic.model}' (an embeddings model "
                              "of this file)")


def _check_guardrails(cfg: Config) -> None:
    problem = check_policies(cfg.guardrails)
    if problem:
        raise ConfigError(problem)
    known = cfg.guardrails.policies
    named = [(f"groups.{n}", g.guardrails) for n, g in cfg.groups.items()]
    named += [(f"models[{i}]", m.guardrails) for i, m in enumerate(cfg.models)]
    for path, names in named:
        for k, name in enumerate(names):
            if name not in known:
                raise ConfigError(f"{path}.guardrails[{k}]: unknown guardrail policy '{name}' "
                                  "(define it under guardrails.policies)")
    models = {m.name: m for m in cfg.models}
    for pname, policy in known.items():
        for i, check in enumerate(policy.checks):
            guard = models.get(check.model or "") if check.type == "guard_model" else None
            if check.type == "guard_model" and (guard is None or guard.guardrails):
                why = "a model of this file" if guard is None else "a model without guardrails of its own"
                raise ConfigError(f"guardrails.policies.{pname}.checks[{i}].model: the guard must be {why}")
    problem = check_parallel(cfg.guardrails, cfg.models, cfg.groups)
    if problem:
        raise ConfigError(problem)
