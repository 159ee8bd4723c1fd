"""Serve gatehouse in the test process over a real loopback socket (our HTTP/1.1 protocol), from a
config dict, with its own data dir; plus the small helpers the cache tests share."""
from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gatehouse.app import GatehouseApp
from gatehouse.config import from_mapping
from gatehouse.runtime import Runtime
from tests.conftest import base_config
from tests.server.serving import serve_h1

CAROL_KEY = "carol-secret-key-3"


def config(upstream: str, cache: dict[str, Any] | None = None, **over: Any) -> dict[str, Any]:
    """The base config with a `cache:` block (default: 60 s) on its chat model, and carol in group dev."""
    cfg = base_config(upstream, metering={"flush_seconds": 0.05}, **over)
    cfg["models"][0]["cache"] = cache if cache is not None else {"ttl_seconds": 60}
    cfg["consumers"]["carol"] = {"group": "dev", "keys": [CAROL_KEY]}
    return cfg


def chat(text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": text}], "temperature": 0, **extra}


def upstream_calls(recorder: Any) -> int:
    return sum(1 for r in recorder.requests if r.path == "/v1/chat/completions")


@contextlib.contextmanager
def serve_app(cfg: dict[str, Any], home: Path) -> Iterator[tuple[str, GatehouseApp]]:
    """`serve`, also yielding the app (a test that looks at its runtime)."""
    config = from_mapping(cfg, env={})
    home.mkdir(parents=True, exist_ok=True)

    async def build() -> Runtime:
        return await Runtime.build(config, home)

    app = GatehouseApp(build, config.server.cors_origins)
    with serve_h1(app) as port:
        yield f"http://127.0.0.1:{port}", app


@contextlib.contextmanager
def serve(cfg: dict[str, Any], home: Path) -> Iterator[str]:
    with serve_app(cfg, home) as (url, _):
        yield url


def post(url: str, body: dict[str, Any], key: str, headers: dict[str, str] | None = None,
         method: str = "POST") -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None, method=method,
                                 headers={"authorization": f"Bearer {key}", "content-type": "application/json",
                                          **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, e.read(), {k.lower(): v for k, v in e.headers.items()}


