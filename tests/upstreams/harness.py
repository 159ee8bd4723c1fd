"""Run an aiohttp application on a free loopback port in a background thread.

Every test upstream records what reached it (method, path, headers, body) so tests can
assert both what was sent upstream and that nothing was sent when it should not have been.
"""
from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict  # case-insensitive, as HTTP headers are
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


@dataclass
class Recorder:
    requests: list[Seen] = field(default_factory=list)

    def clear(self) -> None:
        self.requests.clear()

    @property
    def last(self) -> Seen:
        return self.requests[-1]


def recording_middleware(recorder: Recorder):
    @web.middleware
    async def record(request: web.Request, handler):
        body = await request.read()
        recorder.requests.append(
            Seen(request.method, request.path, dict(request.query), CIMultiDict(request.headers), body)
        )
        return await handler(request)

    return record


class ServerThread:
    """Serve `make_app(recorder)` on 127.0.0.1:<free port> until stop()."""

    def __init__(self, make_app: Callable[[Recorder], web.Application], ssl_context: ssl.SSLContext | None = None):
        self.recorder = Recorder()
        self.ssl_context = ssl_context  # set: served over https
        self._make_app = make_app
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = self._make_app(self.recorder)
        app.middlewares.insert(0, recording_middleware(self.recorder))
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("test upstream did not start")
        return self

    def stop(self) -> None:
        async def _cleanup() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        fut = asyncio.run_coroutine_threadsafe(_cleanup(), self._loop)
        try:
            fut.result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
