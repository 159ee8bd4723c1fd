"""Active health checks (`providers.<name>.health_check`): a GET on each checked provider every
`interval_seconds`, off the request path, so a dead backend is ejected before a request pays its
timeout, and an ejected one comes back as soon as it answers again.

A check fails on a connect error, a timeout or a status of 500 or more; each failure counts
against the breaker of every deployment on that provider like a failed request would
(`failure_threshold` consecutive ones eject). A passing check puts an ejected deployment back in
rotation at once, without waiting for its probe. The URL is the provider's `base_url` without its
`/v1`, plus `path` (vLLM, SGLang and llama.cpp server answer `/health`).

Readiness of `scale_to_zero: true` deployments rides along: their readiness URL (the provider's
`health_check.path`, else `/health`) is asked every `cold_start.poll_interval_seconds`; while it
does not answer 2xx (not listening, 503 while the engine loads its weights) the deployment is out of
rotation (`Breaker.not_ready`, a cool-down renewed each poll, so it lapses if polling stops). A
request that finds every deployment of its model so is held by the cold start (routing/coldstart.py)
rather than sent to an engine that cannot answer yet.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import aiohttp

if TYPE_CHECKING:
    from gatehouse.routing.health import Breaker
    from gatehouse.upstream.client import HttpPool

log = logging.getLogger("gatehouse.health")


class ActiveChecks:
    """Every checked provider of one Runtime: (url, interval, its breakers); one task each."""

    def __init__(self, http: HttpPool) -> None:
        self.http = http
        self.checks: list[tuple[str, float, list[Breaker]]] = []
        self.readiness: list[tuple[str, float, Breaker]] = []  # scale_to_zero deployments
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, url: str, interval: float, breakers: list[Breaker]) -> None:
        self.checks.append((url, interval, breakers))

    def add_readiness(self, url: str, interval: float, breaker: Breaker) -> None:
        if all(b is not breaker for _, _, b in self.readiness):  # (a deployment shared by models: once)
            self.readiness.append((url, interval, breaker))

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._run(*c)) for c in self.checks]
            self._tasks += [asyncio.create_task(self._ready(*c)) for c in self.readiness]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, url: str, interval: float, breakers: list[Breaker]) -> None:
        timeout = aiohttp.ClientTimeout(total=max(1.0, min(interval, 5.0)))
        while True:
            started = time.monotonic()
            try:
                async with self.http.session.get(url, timeout=timeout) as r:
                    ok = r.status < 500
            except Exception:
                ok = False
            for b in breakers:
                if ok:
                    if b.ejected_until and not b.cooling:
                        b.record_success()
                else:
                    b.record_failure()
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _ready(self, url: str, interval: float, breaker: Breaker) -> None:
        timeout = aiohttp.ClientTimeout(total=max(1.0, min(interval * 2, 5.0)))
        while True:
            started = time.monotonic()
            ready = await is_ready(self.http.session, url, timeout)
            if ready:
                if breaker.not_ready:
                    breaker.not_ready = False
                    if breaker.cooling:
                        breaker.record_success()
                    log.warning("deployment %s reports ready", breaker.name)
            else:
                if not breaker.not_ready:
                    log.warning("deployment %s reports not ready: out of rotation until it is", breaker.name)
                breaker.not_ready = True
                breaker.cool_down(interval * 2 + 1.0)  # renewed each poll: lapses if polling stops
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


async def is_ready(session: aiohttp.ClientSession, url: str, timeout: aiohttp.ClientTimeout) -> bool:
    """A readiness probe: a 2xx answer (vLLM's /health answers 200 once its engine is up)."""
    try:
        async with session.get(url, timeout=timeout) as r:
            return 200 <= r.status < 300
    except Exception:
        return False
