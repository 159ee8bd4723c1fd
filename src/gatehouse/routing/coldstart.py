"""Scale-from-zero hold: requests wait while a model's deployments come up, instead of failing.

When every deployment of a model with `cold_start` refused the connection or answered 503 (or is
ejected for it), the request joins the model's bounded queue (`max_queue`; beyond it: 503 at once)
and waits up to `timeout_seconds`. The first waiter of an episode starts one poller, which wakes the
backend once (the optional `wake.url` webhook, and/or the Kubernetes scale subresource of
`wake.kubernetes`), then asks each deployment's readiness URL (its provider's
`base_url` + `ready_path`) every `poll_interval_seconds`: any answer below 500 means it is up (for a
`scale_to_zero` deployment: its readiness probe, routing/active.py, answering 2xx). Then
that deployment's breaker is closed and every waiter goes out, in the order it arrived
(gateway/attempts.py plans again). The client sees `x-gatehouse-cold-start: true`; on timeout a 503
with Retry-After in its own dialect. The poller stops when nobody is waiting any more.
"""
from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from gatehouse.errors import UpstreamBusy, UpstreamError, UpstreamUnavailable
from gatehouse.observability.safe import describe

if TYPE_CHECKING:
    from gatehouse.config import ColdStartConfig, KubernetesScaleConfig
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.routing.table import Deployment
    from gatehouse.upstream.client import HttpPool

log = logging.getLogger("gatehouse.coldstart")

COLD_HEADER = "x-gatehouse-cold-start"


async def scale_up(session: aiohttp.ClientSession, k8s: KubernetesScaleConfig, model: str) -> None:
    """Raise the workload's replicas to `k8s.replicas` through its scale subresource, unless it
    already has that many (needs `get` and `patch` on deployments/scale or statefulsets/scale)."""
    token, ssl_ctx = await asyncio.to_thread(_credentials, k8s)
    url = (f"{k8s.api_url.rstrip('/')}/apis/apps/v1/namespaces/{k8s.namespace}/{k8s.kind}s/{k8s.name}/scale")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=10)
    async with session.get(url, headers=headers, timeout=timeout, ssl=ssl_ctx) as r:
        if r.status != 200:
            raise RuntimeError(f"reading the scale of {k8s.kind} {k8s.namespace}/{k8s.name}: HTTP {r.status}")
        current = ((await r.json()).get("spec") or {}).get("replicas") or 0
    if current >= k8s.replicas:
        return
    async with session.patch(url, data=json.dumps({"spec": {"replicas": k8s.replicas}}),
                             headers={**headers, "Content-Type": "application/merge-patch+json"},
                             timeout=timeout, ssl=ssl_ctx) as r:
        if r.status != 200:
            raise RuntimeError(f"scaling {k8s.kind} {k8s.namespace}/{k8s.name}: HTTP {r.status}")
    log.warning("model %s: scaled %s %s/%s from %d to %d replicas", model, k8s.kind, k8s.namespace, k8s.name,
                current, k8s.replicas)


def _credentials(k8s: KubernetesScaleConfig) -> tuple[str, ssl.SSLContext | bool]:
    """The service account's token and the cluster CA (read per wake: tokens are rotated)."""
    try:
        token = Path(k8s.token_file).read_text().strip()
    except OSError:
        token = ""
    if not k8s.api_url.startswith("https://"):
        return token, False
    ctx = ssl.create_default_context(cafile=k8s.ca_file) if Path(k8s.ca_file).exists() else True
    return token, ctx


async def _wait_sending_keepalives(ex: Exchange, fut: asyncio.Future[None], deadline: float,
                                   every: float) -> None:
    """Wait for `fut` until `deadline` (TimeoutError after it), sending the held stream a
    keep-alive frame every `every` seconds meanwhile (routing/keepalive.py)."""
    held = ex.held
    assert held is not None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        try:
            await asyncio.wait_for(asyncio.shield(fut), min(every, left))
            return
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise
        await held.ping()


class ColdStart:
    """One model's hold queue and its readiness poller (see the module doc)."""

    def __init__(self, model: str, deployments: tuple[Deployment, ...], ready_urls: tuple[str | None, ...],
                 cfg: ColdStartConfig, http: HttpPool, strict: tuple[bool, ...] = ()) -> None:
        self.model = model
        # (deployment, readiness URL, whether only a 2xx is "up": scale_to_zero's readiness probe)
        strict = strict or (False,) * len(deployments)
        self.targets = tuple((d, u, s) for d, u, s in zip(deployments, ready_urls, strict) if u is not None)
        self.cfg = cfg
        self.http = http
        self.waiting = 0
        self.episode: asyncio.Future[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        # reported by GET /admin/deployments
        self.cold_starts = 0
        self.held = 0
        self.timeouts = 0
        self.last_wait_seconds = 0.0
        self.wait_seconds_total = 0.0

    @staticmethod
    def is_cold(err: UpstreamError) -> bool:
        """Refused (nobody listening), a 503, or every deployment ejected after those: cold.
        A timeout or a 502 is a sick deployment, not a sleeping one; our own pool cap is neither."""
        if isinstance(err, UpstreamBusy):
            return False
        return err.code == "upstream_unreachable" or err.status == 503

    async def hold(self, ex: Exchange, raise_on_timeout: bool = True) -> bool:
        """Wait until a deployment is up (True); raises 503 (with Retry-After) when the queue is
        full or the wait times out — or, with `raise_on_timeout` off (the model has fallbacks),
        returns False then."""
        cfg = self.cfg
        if self.waiting >= cfg.max_queue:
            if not raise_on_timeout:
                return False
            raise UpstreamUnavailable(f"The model '{self.model}' is starting and its queue is full; retry later.",
                                      code="cold_start_queue_full",
                                      headers={"retry-after": str(max(1, round(cfg.poll_interval_seconds * 5)))})
        fut = self.episode
        if fut is None or fut.done():
            fut = self.episode = asyncio.get_running_loop().create_future()
            self.cold_starts += 1
            self._poller = asyncio.create_task(self._poll(fut))
            log.warning("model %s is cold: holding its requests while it starts", self.model)
        self.waiting += 1
        self.held += 1
        ex.response_headers[COLD_HEADER] = "true"
        started = time.monotonic()
        try:
            if ex.held is None:
                await asyncio.wait_for(asyncio.shield(fut), cfg.timeout_seconds)
            else:
                await _wait_sending_keepalives(ex, fut, started + cfg.timeout_seconds, cfg.keepalive_seconds)
        except TimeoutError:
            self.timeouts += 1
            if not raise_on_timeout:
                return False
            raise UpstreamUnavailable(
                f"The model '{self.model}' is starting and was not ready within {cfg.timeout_seconds:g} s; "
                "retry later.", code="cold_start_timeout",
                headers={"retry-after": str(max(1, round(cfg.poll_interval_seconds * 5)))}) from None
        finally:
            self.waiting -= 1
            self.last_wait_seconds = time.monotonic() - started
            self.wait_seconds_total += self.last_wait_seconds
        return True

    async def _poll(self, fut: asyncio.Future[None]) -> None:
        session = self.http.session
        wake = self.cfg.wake
        if wake is not None:
            try:
                if wake.url is not None:
                    async with session.post(wake.url, json={"model": self.model},
                                            timeout=aiohttp.ClientTimeout(total=10)) as r:
                        log.info("woke model %s: the webhook answered %d", self.model, r.status)
                if wake.kubernetes is not None:
                    await scale_up(session, wake.kubernetes, self.model)
            except Exception as e:
                log.warning("could not wake model %s: %s", self.model, describe(e))
        timeout = aiohttp.ClientTimeout(total=max(1.0, self.cfg.poll_interval_seconds * 2))
        while not fut.done():
            if self.waiting == 0 and fut is self.episode:  # everyone gave up: stop polling
                fut.cancel()
                return
            for dep, url, strict in self.targets:
                try:
                    async with session.get(url, timeout=timeout) as r:
                        up = 200 <= r.status < 300 if strict else r.status < 500
                except Exception:
                    up = False
                if up:
                    dep.breaker.record_success()
                    log.warning("model %s: deployment %s/%s is up", self.model, dep.provider_name, dep.upstream_model)
                    if not fut.done():
                        fut.set_result(None)
            if not fut.done():
                await asyncio.sleep(self.cfg.poll_interval_seconds)
