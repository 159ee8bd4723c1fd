"""Prices per model deployment and the cost of a request's usage.

A deployment is priced by explicit per-million-token prices (`input_per_mtok`,
`output_per_mtok`, `cached_input_per_mtok`) or, for self-hosted backends, by the GPU's hourly
cost amortised over its measured aggregate throughput: a GPU costing $2.00/h that sustains
1,000 output tokens/s costs 2.00 / 3600 / 1000 $ per output token = $0.556 per million.
Explicit prices win over derived ones, field by field.

`Usage.input_tokens` includes `cache_read_tokens` (the OpenAI convention): cached tokens
are billed at `cached_input_per_mtok` (default: the input price) and the rest at the input
price. Reasoning tokens are part of `output_tokens`.

`cost_usd(price_or_deployment, usage)` is the one function every part of the gateway uses
(metering, budgets), so a request is charged the same everywhere.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from msgspec import Struct

from gatehouse.types import Usage

if TYPE_CHECKING:
    from gatehouse.config.schema import Config, DeploymentConfig

MILLION = 1_000_000.0


class Price(Struct, frozen=True):
    """USD per million tokens. A deployment with no price at all has no Price (None)."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    cached_input_per_mtok: float | None = None  # None: same as input


def _per_mtok_from_gpu(cost_per_hour: float | None, tokens_per_second: float | None) -> float | None:
    if cost_per_hour is None or not tokens_per_second:
        return None
    return cost_per_hour / 3600.0 / tokens_per_second * MILLION


def price_of(dep: DeploymentConfig) -> Price | None:
    """The deployment's effective price, or None when it is unpriced."""
    gpu_in = _per_mtok_from_gpu(dep.gpu_cost_per_hour, dep.gpu_input_tokens_per_second)
    gpu_out = _per_mtok_from_gpu(dep.gpu_cost_per_hour, dep.gpu_output_tokens_per_second)
    inp = dep.input_per_mtok if dep.input_per_mtok is not None else gpu_in
    out = dep.output_per_mtok if dep.output_per_mtok is not None else gpu_out
    if inp is None and out is None and dep.cached_input_per_mtok is None:
        return None
    return Price(inp or 0.0, out or 0.0, dep.cached_input_per_mtok)


def cost_usd(price: Price | DeploymentConfig | None, usage: Usage | None) -> float:
    """The cost in USD of `usage` at `price` (a Price or a DeploymentConfig); 0.0 if unpriced."""
    if price is None or usage is None:
        return 0.0
    if not isinstance(price, Price):
        price = price_of(price)
        if price is None:
            return 0.0
    cached = min(usage.cache_read_tokens, usage.input_tokens)
    cached_rate = price.input_per_mtok if price.cached_input_per_mtok is None else price.cached_input_per_mtok
    return ((usage.input_tokens - cached) * price.input_per_mtok + cached * cached_rate
            + usage.output_tokens * price.output_per_mtok) / MILLION


FREE = Price()


class PriceBook:
    """Prices by (model, provider, upstream model) for settling budgets, and the dearest
    deployment of each public model for reserving before the deployment is known. Unpriced
    deployments count as free here; metering applies `pricing.unpriced` to them."""

    def __init__(self, cfg: Config):
        self.by_deployment: dict[tuple[str, str, str], Price] = {}
        self.by_upstream: dict[tuple[str, str], Price] = {}  # a fallback's attempt (docs/routing.md)
        self.worst_by_model: dict[str, Price] = {}
        deps = {m.name: m.deployments for m in cfg.models}
        for m in cfg.models:
            for d in m.deployments:
                p = price_of(d) or FREE
                self.by_deployment[(m.name, d.provider, d.model)] = p
                self.by_upstream.setdefault((d.provider, d.model), p)
            # reserved at the dearest deployment the request may reach, its fallbacks' included
            reachable = [d for name in (m.name, *m.fallbacks, *m.context_window_fallbacks) for d in deps.get(name, ())]
            prices = [price_of(d) or FREE for d in reachable]
            self.worst_by_model[m.name] = Price(
                max(p.input_per_mtok for p in prices), max(p.output_per_mtok for p in prices),
                max(p.input_per_mtok if p.cached_input_per_mtok is None else p.cached_input_per_mtok
                    for p in prices))

    def estimate(self, model: str, input_tokens: int, output_tokens: int) -> float:
        price = self.worst_by_model.get(model, FREE)
        return (input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / MILLION

    def cost(self, model: str, provider: str, upstream_model: str, usage: Usage) -> float:
        price = self.by_deployment.get((model, provider, upstream_model))
        if price is None:  # served by a fallback model's deployment
            price = self.by_upstream.get((provider, upstream_model), FREE)
        return cost_usd(price, usage)
