"""The rules a config needs beyond its types: references between sections (a deployment's
provider, a consumer's group, a guardrail policy's name), the rules that belong to another
module (names and limits: policy/limits_config; guardrail policies: policy/guardrails/config),
and the TLS files, loaded once so a bad one is named at load.

CHECKS runs in order; each function raises a ConfigError naming the field path. This is the
one config module that imports other parts of the gateway (schema.py imports none of them).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from gatehouse.config.adapters import expand_adapters
from gatehouse.config.schema import Config, ConfigError
from gatehouse.policy.guardrails.config import check_parallel, check_policies
from gatehouse.policy.limits_config import check_limit_settings, check_name
from gatehouse.routing.checks import check_routing
from gatehouse.routing.policy_routes import check_policy_routing
from gatehouse.tls import client_context, file_problem, server_context

# Asymmetric algorithms only: a JWKS is public, so an HMAC secret cannot come from one.
JWT_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                            "ES512", "EdDSA"})
# auth.jwt.consumer_prefix ends in ':', which no group or consumer name has (limits_config.NAME_PATTERN)
JWT_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,30}:")


def check_models(cfg: Config) -> None:
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
                raise ConfigError(f"{path}.deployments[{j}].provider: unknown provider '{dep.provider}'")
    for pattern, target in cfg.model_aliases.items():
        if target not in seen:
            raise ConfigError(f"model_aliases.{pattern}: unknown model '{target}'")


def check_names_and_limits(cfg: Config) -> None:
    """Group and consumer names and allowances (names first: later messages quote them)."""
    for name, g in cfg.groups.items():
        check_name(name, "groups")
        check_limit_settings(g, f"groups.{name}")
    admin = cfg.admin.key or None
    admin_sha = hashlib.sha256(admin.encode()).hexdigest() if admin else None
    for name, c in cfg.consumers.items():
        check_name(name, "consumers")
        check_limit_settings(c, f"consumers.{name}")
        for k, key in enumerate(c.keys):
            if admin and (key == admin or key == f"sha256:{admin_sha}"):
                raise ConfigError(f"consumers.{name}.keys[{k}]: a consumer key must differ from admin.key")


def check_redis_url(cfg: Config) -> None:
    if cfg.store.redis_url and not cfg.store.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("store.redis_url: must start with redis://, rediss:// or unix://")


def check_jwt(cfg: Config) -> None:
    jwt = cfg.auth.jwt
    if (cfg.ui.admin_values or cfg.ui.read_only_values) and jwt is None:
        raise ConfigError("ui.admin_values / ui.read_only_values: ID-token sign-in needs auth.jwt (issuer, "
                          "audience, jwks_url)")
    if not cfg.ui.role_claim:
        raise ConfigError("ui.role_claim: must not be empty")
    if jwt is None:
        return
    if urlsplit(jwt.jwks_url).scheme not in ("http", "https"):
        raise ConfigError("auth.jwt.jwks_url: must be an http(s) URL")
    if not jwt.algorithms:
        raise ConfigError("auth.jwt.algorithms: list at least one algorithm")
    for i, alg in enumerate(jwt.algorithms):
        if alg not in JWT_ALGORITHMS:
            raise ConfigError(f"auth.jwt.algorithms[{i}]: '{alg}' is not allowed (use one of "
                              f"{', '.join(sorted(JWT_ALGORITHMS))})")
    if not jwt.issuer:
        raise ConfigError("auth.jwt.issuer: must not be empty")
    if not jwt.audience:
        raise ConfigError("auth.jwt.audience: must not be empty")
    if jwt.consumer_prefix and not JWT_PREFIX.fullmatch(jwt.consumer_prefix):
        raise ConfigError("auth.jwt.consumer_prefix: must be '' (subjects are key consumers' names, on purpose) "
                          "or 1-32 letters, digits, . _ @ - ending in ':' (default 'jwt:')")


def check_consumers(cfg: Config) -> None:
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


def check_tls(cfg: Config) -> None:
    """Load every configured TLS file once, so `gatehouse check` and startup name a bad one."""
    tls = cfg.server.tls
    if tls is not None:
        for name in ("cert_file", "key_file", "client_ca_file"):
            path = getattr(tls, name)
            if path is not None and not os.path.isfile(path):
                raise ConfigError(f"server.tls.{name}: no such file: {path}")
        try:
            server_context(tls)
        except (OSError, ValueError) as e:
            raise ConfigError(f"server.tls: {file_problem(e)}") from None
    for pname, prov in cfg.providers.items():
        path = f"providers.{pname}"
        if prov.client_key_file and not prov.client_cert_file:
            raise ConfigError(f"{path}.client_key_file: needs client_cert_file")
        if not (prov.ca_file or prov.client_cert_file):
            continue
        url = getattr(prov, "base_url", None) or getattr(prov, "endpoint_url", None) or (
            "http://" if prov.type == "ollama" else "")  # (ollama: local default)
        if url.startswith("http://") or prov.type == "echo":
            raise ConfigError(f"{path}.ca_file: TLS settings apply to https upstreams only "
                              f"(this provider's URL is not https)")
        for name in ("ca_file", "client_cert_file", "client_key_file"):
            file = getattr(prov, name)
            if file is not None and not os.path.isfile(file):
                raise ConfigError(f"{path}.{name}: no such file: {file}")
        try:
            client_context(prov)
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path}: TLS files: {file_problem(e)}") from None


def check_guardrails(cfg: Config) -> None:
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


# Optional extras (pyproject.toml): the packages a config needs beyond the base install, said at
# load rather than on the first request that would import them.
DIST = "llm-gatehouse"
_POSTGRES = ("postgres://", "postgresql://", "postgresql+asyncpg://")


def _needs(cfg: Config) -> list[tuple[str, str, tuple[str, ...]]]:
    """(what the config sets, extra, modules) for each optional feature the config uses."""
    needs: list[tuple[str, str, tuple[str, ...]]] = []
    if (cfg.store.url or "").startswith(_POSTGRES):
        needs.append(("store.url is postgres://", "postgres", ("asyncpg",)))
    if cfg.store.redis_url:
        needs.append(("store.redis_url is set", "redis", ("redis",)))
    bedrock = [name for name, p in cfg.providers.items() if p.type == "bedrock"]
    if bedrock:
        needs.append((f"providers.{bedrock[0]} is type bedrock", "aws", ("botocore",)))
    if cfg.auth.jwt is not None:
        needs.append(("auth.jwt is set", "jwt", ("jwt", "cryptography")))
    if cfg.tracing.enabled and cfg.tracing.protocol == "grpc":
        needs.append(("tracing.protocol is grpc", "otel", ("grpc",)))
    return needs


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def check_extras(cfg: Config) -> None:
    for what, extra, modules in _needs(cfg):
        missing = [m for m in modules if not _installed(m)]
        if missing:
            raise ConfigError(f"{what} but {missing[0]} is not installed: pip install '{DIST}[{extra}]'")


def check_cache(cfg: Config) -> None:
    """A redis-backed cache needs store.redis_url; a semantic cache embeds through a model of the file
    (docs/cache.md)."""
    blocks = [(f"groups.{n}.cache", g.cache) for n, g in cfg.groups.items()]
    blocks += [(f"models[{i}].cache", m.cache) for i, m in enumerate(cfg.models)]
    for path, c in blocks:
        if c is None:
            continue
        if c.enabled and c.backend == "redis" and not cfg.store.redis_url:
            raise ConfigError(f"{path}.backend: redis needs store.redis_url")
        if c.max_entry_bytes > c.max_bytes:
            raise ConfigError(f"{path}.max_entry_bytes: must not exceed max_bytes")
        if c.semantic is not None and c.semantic.model not in {m.name for m in cfg.models}:
            raise ConfigError(f"{path}.semantic.model: unknown model '{c.semantic.model}' (an embeddings model "
                              "of this file)")


def check_routing_policies(cfg: Config) -> None:
    """Group default models and compliance routing (routing/policy_routes.py)."""
    problem = check_policy_routing(cfg)
    if problem:
        raise ConfigError(problem)


CHECKS: tuple[Callable[[Config], None], ...] = (
    expand_adapters, check_models, check_names_and_limits, check_redis_url, check_jwt, check_consumers, check_tls,
    check_guardrails, check_cache, check_routing, check_extras, check_routing_policies,
)


def check(cfg: Config) -> None:
    """Raise the first problem of a typed config as a ConfigError naming the field."""
    for rule in CHECKS:
        rule(cfg)
