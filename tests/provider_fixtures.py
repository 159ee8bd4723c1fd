"""Session fixtures for the Bedrock, Gemini and Ollama wire-format test upstreams.

Import the fixtures a module needs (`from tests.provider_fixtures import bedrock_upstream`);
pytest picks them up from the module's namespace.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import Gatehouse
from tests.upstreams import bedrock_wire, gemini_wire, ollama_wire
from tests.upstreams.harness import ServerThread

BEDROCK_ENV_KEYS = {"AWS_ACCESS_KEY_ID": bedrock_wire.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": bedrock_wire.SECRET_KEY}
CLAUDE = "us.anthropic.claude-3-5-sonnet-20241022-v2:0"  # a cross-region inference profile id


def start_aws_isolated(config: dict[str, Any], home: Path, env: dict[str, str] | None = None) -> Gatehouse:
    """Start gatehouse with only the AWS settings in `env`: none of the machine's AWS_* variables,
    no ~/.aws files, no instance-metadata probes (botocore would try all of them)."""
    home.mkdir(parents=True, exist_ok=True)
    empty = home / "aws-empty"
    empty.write_text("")
    wanted = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": str(empty),
              "AWS_SHARED_CREDENTIALS_FILE": str(empty), **(env or {})}
    gh = Gatehouse(config, home, wanted)
    for name in [k for k in gh.env if k.startswith("AWS_") and k not in wanted]:
        del gh.env[name]
    return gh.start()


@pytest.fixture
def start_aws_gatehouse(tmp_path: Path) -> Iterator[Callable[..., Gatehouse]]:
    started: list[Gatehouse] = []

    def start(config: dict[str, Any], env: dict[str, str] | None = None) -> Gatehouse:
        gh = start_aws_isolated(config, tmp_path / f"aws-home{len(started)}", env)
        started.append(gh)
        return gh

    yield start
    for gh in started:
        gh.stop()


@pytest.fixture(scope="session")
def bedrock_upstream() -> Iterator[ServerThread]:
    with ServerThread(bedrock_wire.make_app) as srv:
        yield srv


@pytest.fixture(scope="session")
def gemini_upstream() -> Iterator[ServerThread]:
    with ServerThread(gemini_wire.make_app) as srv:
        yield srv


@pytest.fixture(scope="session")
def ollama_upstream() -> Iterator[ServerThread]:
    with ServerThread(ollama_wire.make_app) as srv:
        yield srv
