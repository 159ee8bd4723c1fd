"""Limit settings in config: validation with field paths, and the effective limits computed
from a group and a consumer's overrides."""
from __future__ import annotations

import hashlib

import pytest

from gatehouse.config import ConfigError, ConsumerConfig, GroupConfig, from_mapping
from gatehouse.policy.limits_config import effective_limits


def config(**extra):
    cfg = {"providers": {"o": {"type": "openai", "base_url": "http://127.0.0.1:1/v1"}},
           "models": [{"name": "m", "deployments": [{"provider": "o", "model": "x"}]}]}
    cfg.update(extra)
    return cfg


def error_of(raw) -> str:
    with pytest.raises(ConfigError) as e:
        from_mapping(raw, {})
    return str(e.value)


def test_limits_and_prices_load():
    cfg = from_mapping(config(
        groups={"dev": {"models": ["m"], "tokens_per_minute": 10000, "budget_usd_per_month": 12.5,
                        "max_tokens": "unlimited", "limit_scope": "group"}},
        consumers={"a": {"group": "dev", "tokens_per_minute": 20000}},
        limits={"on_store_error": "closed", "replicas": 3},
        auth={"jwt": {"jwks_url": "https://idp/jwks", "issuer": "https://idp/", "audience": ["gh", "api"]}},
    ), {})
    assert cfg.groups["dev"].tokens_per_minute == 10000 and cfg.groups["dev"].budget_usd_per_month == 12.5
    assert cfg.consumers["a"].tokens_per_minute == 20000 and cfg.limits.on_store_error == "closed"
    assert cfg.auth.jwt.algorithms == ["RS256"]


@pytest.mark.parametrize("raw,expected", [
    (config(groups={"g": {"tokens_per_minute": 0}}), "groups.g.tokens_per_minute: must be positive"),
    (config(groups={"g": {"budget_usd_per_day": -1}}), "groups.g.budget_usd_per_day: must be positive"),
    (config(groups={"g": {"tokens_per_minute": "lots"}}), "groups.g.tokens_per_minute: invalid enum value"),
    (config(groups={"g": {"rate": 5}}), "groups.g: unknown field 'rate'"),
    (config(groups={"g": {"limit_scope": "team"}}), "groups.g.limit_scope"),
    (config(groups={"a/b": {}}), "groups: invalid name 'a/b': names are 1-64 characters"),
    (config(groups={"line\nbreak": {}}), "groups: invalid name 'line\\nbreak'"),
    (config(groups={"": {}}), "groups: invalid name '': names are"),
    (config(groups={"g" * 129: {}}), "groups: invalid name 'ggg"),
    (config(groups={"g": {}}, consumers={"jwt:alice": {"group": "g"}}), "consumers: invalid name 'jwt:alice'"),
    (config(groups={"g": {}}, consumers={"x" * 65: {"group": "g"}}), "consumers: invalid name 'xxx"),
    (config(groups={"g": {}}, consumers={"c": {"keys": ["k"]}}),
     "consumers.c.group: required: name the consumer's group, or set access.default_group"),
    (config(groups={"g": {}}, access={"default_group": "nope"}), "access.default_group: unknown group 'nope'"),
    (config(groups={"g": {}}, access={"unknown_consumers": "default_group"}),
     "access.unknown_consumers: 'default_group' needs access.default_group"),
    (config(groups={"g": {}}, consumers={"c": {"group": "g", "max_concurrent": -2}}),
     "consumers.c.max_concurrent: must be positive"),
    (config(admin={"key": "same"}, consumers={"c": {"keys": ["same"]}}),
     "consumers.c.keys[0]: a consumer key must differ from admin.key"),
    (config(admin={"key": "same"}, consumers={"c": {"keys": ["sha256:" + hashlib.sha256(b"same").hexdigest()]}}),
     "consumers.c.keys[0]: a consumer key must differ from admin.key"),
    (config(limits={"on_store_error": "maybe"}), "limits.on_store_error"),
    (config(limits={"store_timeout_seconds": 0}), "limits.store_timeout_seconds: must be positive"),
    (config(store={"redis_url": "http://redis:6379"}), "store.redis_url: must start with redis://"),
    (config(auth={"jwt": {"jwks_url": "https://i/j", "issuer": "i", "audience": "a", "algorithms": ["none"]}}),
     "auth.jwt.algorithms[0]: 'none' is not allowed"),
    (config(auth={"jwt": {"jwks_url": "https://i/j", "issuer": "i", "audience": "a", "algorithms": ["HS256"]}}),
     "auth.jwt.algorithms[0]: 'HS256' is not allowed"),
    (config(auth={"jwt": {"jwks_url": "file:///etc/keys", "issuer": "i", "audience": "a"}}),
     "auth.jwt.jwks_url: must be an http(s) URL"),
    (config(auth={"jwt": {"issuer": "i", "audience": "a"}}), "auth.jwt.jwks_url: required field is missing"),
    (config(auth={"jwt": {"jwks_url": "https://i/j", "issuer": "i", "audience": "a", "consumer_prefix": "sso"}}),
     "auth.jwt.consumer_prefix: must be ''"),
])
def test_errors_name_the_field(raw, expected):
    assert error_of(raw).startswith(expected)


def test_effective_limits_overlay_and_pools():
    group = GroupConfig(tokens_per_minute=100, requests_per_minute=10, budget_usd_per_day=5.0)
    own = ConsumerConfig(tokens_per_minute=500, budget_usd_per_day="unlimited")
    lim = effective_limits("ann", "dev", group, own)
    assert (lim.tokens_per_minute, lim.requests_per_minute, lim.budget_usd_per_day) == (500, 10, None)
    assert set(lim.pools) == {"c:ann"}
    shared = effective_limits("ann", "team", GroupConfig(tokens_per_minute=100, requests_per_minute=10,
                                                         limit_scope="group"),
                              ConsumerConfig(tokens_per_minute=500))
    # METERED order: requests, tokens, concurrent, usd_day, usd_month. The override is personal.
    assert shared.pools[:2] == ("g:team", "c:ann")
    assert effective_limits("ann", "dev", GroupConfig(models=["*"]), ConsumerConfig()) is None
    assert effective_limits("ann", None, None, None) is None
