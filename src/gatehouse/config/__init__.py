"""The gateway's configuration: `from gatehouse.config import Config, load, ConfigError, ...`.

Three modules, one direction: schema.py (the typed structs and their field rules; imports
nothing from gatehouse) <- check.py (rules between sections and with other modules) <-
loader.py (YAML, ${VAR}s, msgspec errors in words, then the checks). This package re-exports
them, so callers import from `gatehouse.config` alone.

The loading functions are bound on first use (PEP 562): the modules check.py imports
(policy/limits_config, policy/guardrails/config, tls) import the schema, which runs this
file first; importing loader.py here would import them back half-loaded. (loader.py, not
load.py: a submodule named `load` would shadow the function `load` on this package.)
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from gatehouse.config.schema import (
    AccessConfig,
    AdminConfig,
    AnthropicConfig,
    AuthConfig,
    BedrockConfig,
    CacheConfig,
    ColdStartConfig,
    Config,
    ConfigError,
    ConsumerConfig,
    DeploymentConfig,
    EchoConfig,
    GeminiConfig,
    GroupConfig,
    GuardCheckConfig,
    GuardPolicyConfig,
    GuardrailConfig,
    GuardrailsConfig,
    HealthCheckConfig,
    JwtConfig,
    KubernetesScaleConfig,
    LimitsConfig,
    LimitSettings,
    LoggingConfig,
    MeteringConfig,
    MetricsConfig,
    ModelConfig,
    OllamaConfig,
    OpenAIConfig,
    PricingConfig,
    ProviderConfig,
    ResponsesConfig,
    RoutingConfig,
    SemanticCacheConfig,
    ServerConfig,
    StoreConfig,
    TlsConfig,
    TracingConfig,
    UiConfig,
    UpstreamConfig,
    WakeConfig,
)

if TYPE_CHECKING:
    from gatehouse.config.loader import from_mapping, interpolate, load, load_with_digest

_LOADING = ("from_mapping", "interpolate", "load", "load_with_digest")

__all__ = [
    "ColdStartConfig", "HealthCheckConfig", "KubernetesScaleConfig", "RoutingConfig", "WakeConfig",
    "AccessConfig", "AdminConfig", "AnthropicConfig", "AuthConfig", "BedrockConfig", "CacheConfig", "Config",
    "ConfigError",
    "ConsumerConfig", "DeploymentConfig", "EchoConfig", "GeminiConfig", "GroupConfig", "GuardCheckConfig",
    "GuardPolicyConfig", "GuardrailConfig", "GuardrailsConfig", "JwtConfig", "LimitSettings", "LimitsConfig",
    "LoggingConfig", "MeteringConfig", "MetricsConfig", "ModelConfig", "OllamaConfig", "OpenAIConfig",
    "PricingConfig", "ProviderConfig", "ResponsesConfig", "SemanticCacheConfig", "ServerConfig", "StoreConfig",
    "TlsConfig",
    "TracingConfig", "UiConfig", "UpstreamConfig", "from_mapping", "interpolate", "load",
    "load_with_digest",
]


def __getattr__(name: str) -> Any:
    if name in _LOADING:
        value = getattr(import_module("gatehouse.config.loader"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gatehouse.config' has no attribute {name!r}")
