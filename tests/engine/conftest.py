"""Fixtures for the tests against a real inference server (llama.cpp `llama-server`, tests/engine/
llama.py): the tiny model is written once per session; servers are started per test with the
slots and context the test needs (healthy in ~0.1 s) and stopped at its teardown. Where the engine
cannot run (packages missing, a CPU without AVX-512 BF16) every test using them skips, saying why."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.engine.llama import LlamaServer, make_model, unavailable


@pytest.fixture(scope="session")
def engine_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model (0.8 MB, written in ~0.3 s), once per session (per xdist worker)."""
    reason = unavailable()
    if reason:
        pytest.skip(f"real-engine tests need llama-server: {reason}")
    return make_model(tmp_path_factory.mktemp("engine") / "tiny.gguf")


@pytest.fixture
def start_llama(engine_model: Path, tmp_path: Path) -> Iterator[Callable[..., list[LlamaServer]]]:
    """`start_llama(n, slots=2, ctx=4096)`: n llama-server replicas of the tiny model on free loopback
    ports, each `-np slots -c ctx -t 1 --metrics`, healthy when returned; all stopped at teardown.
    Their output goes to tmp_path/llama-PORT.log."""
    started: list[LlamaServer] = []

    def start(n: int, slots: int = 2, ctx: int = 4096) -> list[LlamaServer]:
        servers = []
        for _ in range(n):
            srv = LlamaServer(engine_model, slots=slots, ctx=ctx, log=tmp_path / f"llama-{len(started)}.log")
            started.append(srv)
            servers.append(srv.start())
        return servers

    yield start
    for srv in started:
        srv.stop()
