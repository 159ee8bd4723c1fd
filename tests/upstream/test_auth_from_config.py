"""Upstream auth is built from a provider's config in one place (upstream/auth.py): the header
each type puts a configured key in, SigV4 for Bedrock without one, and reprs without secrets."""
from __future__ import annotations

import pytest

from gatehouse.config import from_mapping
from gatehouse.providers.registry import PROVIDERS
from gatehouse.upstream.auth import SigV4Auth
from gatehouse.upstream.client import HttpPool

SECRET = "sk-test-do-not-show-1234"


def provider(spec: dict):
    cfg = from_mapping({"providers": {"p": spec}}, {}).providers["p"]
    return PROVIDERS[spec["type"]]("p", cfg, HttpPool())


@pytest.mark.parametrize("spec,header,value", [
    ({"type": "openai", "api_key": SECRET}, "Authorization", f"Bearer {SECRET}"),
    ({"type": "ollama", "api_key": SECRET}, "Authorization", f"Bearer {SECRET}"),
    ({"type": "anthropic", "api_key": SECRET}, "x-api-key", SECRET),
    ({"type": "gemini", "api_key": SECRET}, "x-goog-api-key", SECRET),
    ({"type": "bedrock", "region": "us-west-2", "api_key": SECRET}, "Authorization", f"Bearer {SECRET}"),
])
def test_a_configured_key_goes_in_the_types_header(spec, header, value):
    auth = provider(spec).auth
    headers: dict[str, str] = {}
    auth.apply(headers, "POST", "https://example.test/x", b"{}")
    assert headers == {header: value}
    assert not auth.refreshes and SECRET not in repr(auth)


@pytest.mark.parametrize("type_", ["openai", "ollama", "anthropic"])
def test_no_key_no_header(type_):
    headers: dict[str, str] = {}
    provider({"type": type_}).auth.apply(headers, "POST", "http://127.0.0.1:1/x", b"")
    assert headers == {}


def test_bedrock_without_a_key_signs_with_sigv4_in_its_region():
    auth = provider({"type": "bedrock", "region": "eu-central-1", "profile": "p1"}).auth
    assert isinstance(auth, SigV4Auth) and auth.refreshes
    assert (auth.service, auth.region, auth.profile) == ("bedrock", "eu-central-1", "p1")
    assert repr(auth) == "SigV4Auth(service=bedrock, region=eu-central-1)"
