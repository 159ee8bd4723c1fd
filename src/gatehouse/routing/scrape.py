"""Load-aware routing's eyes: each self-hosted deployment's Prometheus endpoint, scraped off the
request path every `routing.scrape_interval_seconds`, into its `Load` (queue, running, KV cache).

The engines name the same things differently; the first name found wins:

    queue waiting   vllm:num_requests_waiting · llamacpp:requests_deferred · sglang:num_queue_reqs
    running         vllm:num_requests_running · llamacpp:requests_processing · sglang:num_running_reqs
    KV cache use    vllm:kv_cache_usage_perc (older: vllm:gpu_cache_usage_perc) ·
                    llamacpp:kv_cache_usage_ratio · sglang:token_usage          (0..1)

Series with labels (several models on one server) are summed, KV cache use is the maximum.
For LoRA adapter models the same scrape reads `vllm:lora_requests_info` (routing/lora.py).
A deployment whose scrape fails keeps no engine numbers (`scraped_at` = 0) and is scored on the
gateway's own in-flight count alone (routing/strategies.py `LoadAware`).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import aiohttp

from gatehouse.observability.safe import describe
from gatehouse.routing.lora import parse_lora_adapters

if TYPE_CHECKING:
    from gatehouse.routing.lora import LoraState
    from gatehouse.routing.strategies import Load
    from gatehouse.upstream.client import HttpPool

log = logging.getLogger("gatehouse.scrape")

QUEUE = ("vllm:num_requests_waiting", "llamacpp:requests_deferred", "sglang:num_queue_reqs")
RUNNING = ("vllm:num_requests_running", "llamacpp:requests_processing", "sglang:num_running_reqs")
KV_CACHE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "llamacpp:kv_cache_usage_ratio",
            "sglang:token_usage")
_WANTED = frozenset((*QUEUE, *RUNNING, *KV_CACHE))


def parse_engine_metrics(text: str) -> tuple[float, float, float] | None:
    """(waiting, running, kv cache use 0..1) from a Prometheus text exposition; None when it has
    none of the known names."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        brace = line.find("{")
        if brace >= 0:  # name{labels} value [timestamp]; a label value may hold spaces
            name, rest = line[:brace], line[line.rfind("}") + 1:].split()
        else:
            name, *rest = line.split()
        if name not in _WANTED or not rest:
            continue
        try:
            value = float(rest[0])
        except ValueError:
            continue
        if name in KV_CACHE:
            found[name] = max(found.get(name, 0.0), value)
        else:
            found[name] = found.get(name, 0.0) + value
    if not found:
        return None

    def first(names: tuple[str, ...]) -> float:
        return next((found[n] for n in names if n in found), 0.0)

    kv = first(KV_CACHE)
    if kv > 1.0:  # a percentage after all
        kv /= 100.0
    return first(QUEUE), first(RUNNING), kv


class EngineScraper:
    """Every scraped deployment of one Runtime; one task, started and stopped with it."""

    def __init__(self, http: HttpPool, interval: float) -> None:
        self.http = http
        self.interval = interval
        self.targets: dict[str, list[Load]] = {}  # metrics URL -> the Loads it feeds (shared deployments)
        self.loras: dict[str, LoraState] = {}  # metrics URL -> the adapters its engine has loaded
        self._task: asyncio.Task[None] | None = None

    def add(self, url: str, load: Load, interval: float) -> None:
        loads = self.targets.setdefault(url, [])
        if load not in loads:
            loads.append(load)
        self.interval = min(self.interval, interval)

    def lora(self, url: str) -> LoraState:
        """The LoRA adapters of the engine at `url`, scraped from now on (one state per URL)."""
        from gatehouse.routing.lora import LoraState

        state = self.loras.get(url)
        if state is None:
            state = self.loras[url] = LoraState()
            self.targets.setdefault(url, [])
        return state

    def start(self) -> None:
        if self.targets and self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=max(0.5, self.interval * 2))
        failing: set[str] = set()
        while True:
            started = time.monotonic()
            await asyncio.gather(*(self._scrape(url, loads, timeout, failing) for url, loads in self.targets.items()))
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def _scrape(self, url: str, loads: list[Load], timeout: aiohttp.ClientTimeout, failing: set[str]) -> None:
        try:
            async with self.http.session.get(url, timeout=timeout) as r:
                text = await r.text() if r.status == 200 else ""
            numbers = parse_engine_metrics(text) if text and loads else None
        except Exception as e:
            if url not in failing:
                log.warning("could not scrape the engine metrics of a deployment: %s", describe(e))
            failing.add(url)
            numbers, text = None, ""
        else:
            failing.discard(url)
        now = time.monotonic()
        lora = self.loras.get(url)
        if lora is not None:
            adapters = parse_lora_adapters(text) if text else None
            lora.loaded, lora.scraped_at = (adapters, now) if adapters is not None else (frozenset(), 0.0)
        for load in loads:
            if numbers is None:
                load.scraped_at = 0.0
            else:
                load.queue, load.running, load.kv_cache = numbers
                load.scraped_at = now
            load.saturated = numbers is not None and load.queue > load.queue_threshold
