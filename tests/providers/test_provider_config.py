"""Config of each provider type (a tagged union on `type`): errors name the field."""
from __future__ import annotations

import pytest

from gatehouse.config import ConfigError, from_mapping


def check(provider: dict) -> str:
    with pytest.raises(ConfigError) as info:
        from_mapping({"providers": {"p": provider}}, {})
    return str(info.value)


def test_bedrock_needs_a_region(monkeypatch):
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert check({"type": "bedrock"}).startswith("providers.p.region: required for bedrock")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    from_mapping({"providers": {"p": {"type": "bedrock"}}}, {})


@pytest.mark.parametrize("provider,expected", [
    ({"type": "bedrock", "region": "us-east-1", "endpoint_url": "bedrock.local"},
     "providers.p.endpoint_url: must be an http(s) URL"),
    ({"type": "bedrock", "region": "us-east-1", "base_url": "http://x"}, "providers.p.base_url: not used by bedrock"),
    ({"type": "gemini"}, "providers.p.api_key: required for gemini"),
    ({"type": "gemini", "api_key": "k", "base_url": "generativelanguage"}, "providers.p.base_url: must be an http(s) URL"),
    ({"type": "ollama", "base_url": "http://ollama:11434/v1/"}, "providers.p.base_url: the native ollama provider"),
    ({"type": "gemini", "api_key": "k", "region": "us-east-1"}, "providers.p.region: not used by gemini (only by type bedrock)"),
    ({"type": "echo", "base_url": "http://x"}, "providers.p.base_url: not used by echo (only by type anthropic, gemini, "
                                               "ollama, openai)"),
    ({"type": "openai", "first_byte_timeout": 0}, "providers.p.first_byte_timeout: must be positive"),
])
def test_provider_config_errors_name_the_field(provider, expected):
    assert check(provider).startswith(expected)


@pytest.mark.parametrize("guardrail,expected", [
    ({"identifier": "g"}, "providers.p.guardrail.version: required field is missing"),
    ({"identifier": "g", "version": "1", "trace": "loud"}, "providers.p.guardrail.trace: invalid enum value 'loud'"),
    ({"identifier": "g", "version": "1", "headers": {}}, "providers.p.guardrail: unknown field 'headers'"),
])
def test_guardrail_fields_are_typed(guardrail, expected):
    assert check({"type": "bedrock", "region": "us-east-1", "guardrail": guardrail}) == expected
