"""What pyproject.toml ships: package data that exists, and optional extras (the base install
has no backend package, and a config that needs one names its extra when it is loaded, not on
the first request that would import it)."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gatehouse.config import ConfigError, from_mapping

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
OPTIONAL = {"postgres": ["asyncpg"], "redis": ["redis", "hiredis"], "aws": ["botocore"], "jwt": ["pyjwt"],
            "otel": ["grpcio"]}


def _name(requirement: str) -> str:
    for stop in "[<>=;~! ":
        requirement = requirement.split(stop, 1)[0]
    return requirement


def test_every_package_data_pattern_ships_files():
    """The wheel carries the admin UI's assets and the migration template (no stale pattern)."""
    for package, patterns in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        for pattern in patterns:
            assert list((ROOT / "src" / package).glob(pattern)), f"{package}: {pattern}"
    assert (ROOT / "src/gatehouse/web/index.html").is_file()


def test_the_base_dependencies_hold_no_optional_package():
    base = {_name(r) for r in PROJECT["dependencies"]}
    extras = PROJECT["optional-dependencies"]
    for extra, packages in OPTIONAL.items():
        assert not base.intersection(packages), extra
        assert {_name(r) for r in extras[extra]} == set(packages)
    assert extras["all"] == [f"llm-gatehouse[{','.join(OPTIONAL)}]"]
    assert "llm-gatehouse[all]" in extras["dev"]  # make test: every backend


BEDROCK = {"providers": {"aws": {"type": "bedrock", "region": "us-east-1"}}}
JWT = {"auth": {"jwt": {"jwks_url": "https://idp.example/jwks", "issuer": "https://idp.example", "audience": "gh"}}}


@pytest.mark.parametrize("module,raw,expected", [
    ("asyncpg", {"store": {"url": "postgresql://gh@db/gh"}},
     "store.url is postgres:// but asyncpg is not installed: pip install 'llm-gatehouse[postgres]'"),
    ("redis", {"store": {"redis_url": "redis://cache:6379/0"}},
     "store.redis_url is set but redis is not installed: pip install 'llm-gatehouse[redis]'"),
    ("botocore", BEDROCK, "providers.aws is type bedrock but botocore is not installed: "
                          "pip install 'llm-gatehouse[aws]'"),
    ("jwt", JWT, "auth.jwt is set but jwt is not installed: pip install 'llm-gatehouse[jwt]'"),
    ("grpc", {"tracing": {"enabled": True, "protocol": "grpc"}},
     "tracing.protocol is grpc but grpc is not installed: pip install 'llm-gatehouse[otel]'"),
])
def test_a_config_names_the_extra_it_needs(monkeypatch, module, raw, expected):
    from_mapping(raw, {})  # installed here: loads
    monkeypatch.setitem(sys.modules, module, None)  # what `import module` sees when it is absent
    with pytest.raises(ConfigError) as info:
        from_mapping(raw, {})
    assert str(info.value) == expected


# Without the optional packages (their imports fail as when absent), in a fresh interpreter so
# nothing imported earlier by the test session hides a module-level import.
BASE_ONLY = """
import asyncio, sys
from pathlib import Path
for name in ("asyncpg", "redis", "hiredis", "botocore", "jwt", "cryptography", "opentelemetry", "grpc"):
    sys.modules[name] = None
import gatehouse.app, gatehouse.cli
from gatehouse.defaults import embedded_config
from gatehouse.runtime import Runtime
home = Path(sys.argv[1])
rt = asyncio.run(Runtime.build(embedded_config(home), home))
print("built", type(rt).__name__)
"""


@pytest.mark.process  # a fresh interpreter is the subject: what a base install imports
def test_the_embedded_default_needs_no_extra(tmp_path):
    env = {**os.environ, "GATEHOUSE_OLLAMA_URL": "off", "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, "-c", BASE_ONLY, str(tmp_path)], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0 and "built Runtime" in r.stdout, r.stderr
