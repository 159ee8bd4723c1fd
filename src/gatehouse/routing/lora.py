"""LoRA adapters as models: prefer the deployments whose engine already has the adapter loaded.

vLLM reports which adapters it is serving in `vllm:lora_requests_info`, a gauge whose labels
list them (`running_lora_adapters="a,b"`, `waiting_lora_adapters="c"`) and whose value is the time
it was set; a new series appears whenever the set changes, so the series with the latest value is
the current one. The engine scraper (routing/scrape.py) reads it off the request path into each
server's `LoraState`; an adapter model's strategy is wrapped in `LoraFirst`, which moves the
deployments that have the adapter loaded (running or waiting: it is in GPU memory or on its way)
ahead of the others, keeping the strategy's order within each group. Loading an adapter costs a
cold start of its own (read from disk, moved to the GPU, evicting another), so a warm one wins.
config/adapters.py gives the adapter model its base's deployments.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.routing.strategies import Strategy
    from gatehouse.routing.table import Deployment

LORA_INFO = "vllm:lora_requests_info"
_LABEL = re.compile(r'(running|waiting)_lora_adapters="([^"]*)"')


class LoraState:
    """The adapters one engine has loaded, as last scraped (shared by the deployments on it)."""

    __slots__ = ("loaded", "scraped_at")

    def __init__(self) -> None:
        self.loaded: frozenset[str] = frozenset()
        self.scraped_at = 0.0


def parse_lora_adapters(text: str) -> frozenset[str] | None:
    """The adapters running or waiting in an engine's latest `vllm:lora_requests_info` series;
    None when the exposition has no such series."""
    best: tuple[float, frozenset[str]] | None = None
    for line in text.splitlines():
        if not line.startswith(LORA_INFO + "{"):
            continue
        close = line.rfind("}")
        try:
            value = float(line[close + 1:].split()[0])
        except (ValueError, IndexError):
            continue
        names = frozenset(n.strip() for _, group in _LABEL.findall(line[:close]) for n in group.split(",") if n.strip())
        if best is None or value >= best[0]:
            best = (value, names)
    return None if best is None else best[1]


class LoraFirst:
    """A strategy's order with the deployments that have `adapter` loaded first."""

    __slots__ = ("adapter", "inner")

    def __init__(self, inner: Strategy, adapter: str) -> None:
        self.inner = inner
        self.adapter = adapter

    def order(self, deployments: tuple[Deployment, ...], ex: Exchange) -> Iterable[Deployment]:
        ranked = list(self.inner.order(deployments, ex))
        adapter = self.adapter
        loaded = [d for d in ranked if d.lora is not None and adapter in d.lora.loaded]
        if not loaded or len(loaded) == len(ranked):
            return ranked
        return loaded + [d for d in ranked if d.lora is None or adapter not in d.lora.loaded]
