"""`cache:` blocks are checked at load: a field that is accepted must do something."""
from __future__ import annotations

import pytest

from gatehouse.config import ConfigError, from_mapping
from tests.conftest import base_config


def load(cache: dict, **over) -> None:
    cfg = base_config("http://127.0.0.1:9", **over)
    cfg["models"][0]["cache"] = cache
    from_mapping(cfg, env={})


def test_valid_blocks_load():
    load({"ttl_seconds": 10, "scope": "consumer", "max_bytes": 1 << 20, "max_entry_bytes": 1 << 10})
    load({"backend": "redis"}, store={"redis_url": "redis://127.0.0.1:6379/0"})
    load({"semantic": {"model": "embed", "threshold": 0.9}})


@pytest.mark.parametrize("cache, field", [
    ({"backend": "redis"}, "models[0].cache.backend"),
    ({"max_bytes": 100, "max_entry_bytes": 1000}, "models[0].cache.max_entry_bytes"),
    ({"semantic": {"model": "nope"}}, "models[0].cache.semantic.model"),
    ({"ttl_seconds": 0}, "ttl_seconds"),
    ({"scope": "everyone"}, "scope"),
    ({"semantic": {"model": "embed", "threshold": 1.5}}, "threshold"),
    ({"typo": 1}, "typo"),
])
def test_bad_blocks_are_refused_naming_the_field(cache, field):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        load(cache)
