"""Session fixtures: test upstreams, gatehouse (served in the test process; a real process where the
process is the subject), and real Redis/Postgres servers."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import Gatehouse, GatehouseProcess, PostgresServer, RedisServer
from tests.upstreams import openai_wire
from tests.upstreams.harness import ServerThread

pytest_plugins = ["tests.provider_fixtures"]

ADMIN_KEY = "test-admin-key"
ALICE_KEY = "alice-secret-key-1"
BOB_KEY = "bob-secret-key-2"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the session's Postgres server are marked `postgres` (`make test-fast` leaves them out:
    initdb alone takes seconds)."""
    for item in items:
        if "postgres_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def openai_upstream() -> Iterator[ServerThread]:
    with ServerThread(openai_wire.make_app) as srv:
        yield srv


@pytest.fixture
def recorder(openai_upstream: ServerThread):
    openai_upstream.recorder.clear()
    return openai_upstream.recorder


def base_config(upstream_url: str, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "server": {"max_body_bytes": 65536},
        "admin": {"key": ADMIN_KEY},
        "providers": {
            "up": {"type": "openai", "base_url": f"{upstream_url}/v1", "api_key": openai_wire.API_KEY},
            "echo": {"type": "echo"},
        },
        "models": [
            {"name": "chat", "deployments": [{"provider": "up", "model": "up-chat"}]},
            {"name": "embed", "deployments": [{"provider": "up", "model": "up-embed"}]},
            {"name": "echo", "deployments": [{"provider": "echo", "model": "echo"}]},
            {"name": "restricted", "deployments": [{"provider": "up", "model": "up-chat"}]},
        ],
        "groups": {"dev": {"models": ["chat", "embed", "echo"]}, "open": {"models": ["*"]}},
        "consumers": {
            "alice": {"group": "dev", "keys": [ALICE_KEY]},
            "bob": {"group": "open", "keys": [BOB_KEY]},
        },
    }
    cfg.update(overrides)
    return cfg


@pytest.fixture
def start_gatehouse(tmp_path: Path) -> Iterator[Callable[..., Gatehouse]]:
    """Start gatehouses in the test process for a test; all are stopped at teardown."""
    started: list[Gatehouse] = []

    def start(config: dict[str, Any] | None, env: dict[str, str] | None = None, home: Path | None = None) -> Gatehouse:
        gh = Gatehouse(config, home or tmp_path / f"home{len(started)}", env).start()
        started.append(gh)
        return gh

    yield start
    for gh in reversed(started):
        gh.stop()


@pytest.fixture
def start_gatehouse_process(tmp_path: Path) -> Iterator[Callable[..., GatehouseProcess]]:
    """Start `gatehouse serve` processes, for tests whose subject is the process (mark them
    `@pytest.mark.process`); all are stopped at teardown."""
    started: list[GatehouseProcess] = []

    def start(config: dict[str, Any] | None, env: dict[str, str] | None = None,
              home: Path | None = None) -> GatehouseProcess:
        gh = GatehouseProcess(config, home or tmp_path / f"home{len(started)}", env).start()
        started.append(gh)
        return gh

    yield start
    for gh in started:
        gh.stop()


@pytest.fixture(scope="module")
def gatehouse(openai_upstream: ServerThread, tmp_path_factory) -> Iterator[Gatehouse]:
    """One gatehouse shared by a module, over the OpenAI-wire test upstream."""
    gh = Gatehouse(base_config(openai_upstream.url), tmp_path_factory.mktemp("gh")).start()
    yield gh
    gh.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    srv = RedisServer().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    srv = PostgresServer().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def anthropic_upstream() -> Iterator[ServerThread]:
    from tests.upstreams import anthropic_wire

    with ServerThread(anthropic_wire.make_app) as srv:
        yield srv
