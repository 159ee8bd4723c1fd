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
from tests.server.serving import serve_h1


@contextlib.contextmanager
def serve(cfg: dict[str, Any], home: Path) -> Iterator[str]:
    config = from_mapping(cfg, env={})
    home.mkdir(parents=True, exist_ok=True)

    async def build() -> Runtime:
        return await Runtime.build(config, home)

    with serve_h1(GatehouseApp(build, config.server.cors_origins)) as port:
        yield f"http://127.0.0.1:{port}"


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


