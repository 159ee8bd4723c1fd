"""The gateway's configuration: `from gatehouse.config import Config, load, ConfigError, ...`.

Three modules, one direction: schema.py (the typed structs and their field rules; imports
nothing from gatehouse) <- check.py (rules between sections and with other modules) <-
load.py (YAML, ${VAR}s, msgspec errors in words, then the checks). This package re-exports
them, so callers import from `gatehouse.config` alone.
"""
from __future__ import annotations

from gatehouse.config.schema import (
    AccessConfig,
    AdminConfig,
    AnthropicConfig,
    AuthConfig,
    BedrockConfig,
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
    JwtConfig,
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
    ServerConfig,
    StoreConfig,
    TlsConfig,
    TracingConfig,
    UiConfig,
    UpstreamConfig,
)
from gatehouse.config.load import decode, from_mapping, interpolate, load, load_with_digest

__all__ = [
    "AccessConfig", "AdminConfig", "AnthropicConfig", "AuthConfig", "BedrockConfig", "Config", "ConfigError",
    "ConsumerConfig", "DeploymentConfig", "EchoConfig", "GeminiConfig", "GroupConfig", "GuardCheckConfig",
    "GuardPolicyConfig", "GuardrailConfig", "GuardrailsConfig", "JwtConfig", "LimitSettings", "LimitsConfig",
    "LoggingConfig", "MeteringConfig", "MetricsConfig", "ModelConfig", "OllamaConfig", "OpenAIConfig",
    "PricingConfig", "ProviderConfig", "ResponsesConfig", "ServerConfig", "StoreConfig", "TlsConfig",
    "TracingConfig", "UiConfig", "UpstreamConfig", "decode", "from_mapping", "interpolate", "load",
    "load_with_digest",
]
