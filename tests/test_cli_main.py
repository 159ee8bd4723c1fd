"""`gatehouse.cli.main` in the test process: exit codes come back as return values (argparse's
too), and the process settings of `gatehouse serve` stay out of an app served in-process."""
from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import pytest

from gatehouse.app import GatehouseApp
from gatehouse.cli import main
from gatehouse.defaults import embedded_config
from gatehouse.runtime import Runtime


def test_help_and_bad_arguments_return_argparse_status(capsys):
    assert main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: gatehouse")
    assert main(["keys", "frob"]) == 2
    assert "invalid choice: 'frob'" in capsys.readouterr().err
    assert main([]) == 2


def test_a_command_returns_its_exit_code(capsys, tmp_path):
    assert main(["keys", "hash", "abc"]) == 0
    assert capsys.readouterr().out == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
    assert main(["check", "-c", str(tmp_path / "missing.yaml")]) == 1
    assert capsys.readouterr().err.startswith("config error: cannot read config file")


async def _lifespan(app: GatehouseApp) -> list[str]:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await inbox.put({"type": "lifespan.startup"})
    await inbox.put({"type": "lifespan.shutdown"})
    await app({"type": "lifespan"}, inbox.get, send)
    return sent


@pytest.mark.parametrize("with_hook", [False, True])
async def test_the_app_calls_on_started_after_the_build_and_freezes_nothing_itself(tmp_path: Path, with_hook):
    cfg = embedded_config(tmp_path)
    calls: list[bool] = []
    app = GatehouseApp(lambda: Runtime.build(cfg, tmp_path), cfg.server.cors_origins,
                       on_started=(lambda: calls.append(app.runtime is not None)) if with_hook else None)
    frozen = gc.get_freeze_count()
    assert await _lifespan(app) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert calls == ([True] if with_hook else [])
    assert gc.get_freeze_count() == frozen
