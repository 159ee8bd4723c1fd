"""Prices per deployment and the one function that turns usage into USD.

Prices come from each deployment's `input_per_mtok`, `output_per_mtok` and
`cached_input_per_mtok` (USD per million tokens; cached input defaults to input). Canonical
usage counts cache reads and writes inside `input_tokens`, so cached tokens are priced apart
from the rest of the input. A deployment without prices costs 0.
"""
from __future__ import annotations

from msgspec import Struct

from gatehouse.config import Config, DeploymentConfig
from gatehouse.types import Usage


class Price(Struct, frozen=True):
    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    cached_input_per_mtok: float = 0.0

    @property
    def free(self) -> bool:
        return not (self.input_per_mtok or self.output_per_mtok or self.cached_input_per_mtok)


FREE = Price()


def price_of(dep: DeploymentConfig) -> Price:
    inp = dep.input_per_mtok or 0.0
    cached = dep.cached_input_per_mtok if dep.cached_input_per_mtok is not None else inp
    return Price(inp, dep.output_per_mtok or 0.0, cached)


def cost_usd(price: Price, usage: Usage) -> float:
    cached = min(usage.cache_read_tokens, usage.input_tokens)
    fresh = usage.input_tokens - cached
    return (fresh * price.input_per_mtok + cached * price.cached_input_per_mtok
            + usage.output_tokens * price.output_per_mtok) / 1e6


class PriceBook:
    """Prices by (model, provider, upstream model) for settling, and the dearest deployment of each
    public model for reserving before the deployment is known."""

    def __init__(self, cfg: Config):
        self.by_deployment: dict[tuple[str, str, str], Price] = {}
        self.worst_by_model: dict[str, Price] = {}
        for m in cfg.models:
            prices = [price_of(d) for d in m.deployments]
            for d, p in zip(m.deployments, prices):
                self.by_deployment[(m.name, d.provider, d.model)] = p
            self.worst_by_model[m.name] = Price(
                max(p.input_per_mtok for p in prices), max(p.output_per_mtok for p in prices),
                max(p.cached_input_per_mtok for p in prices))

    def estimate(self, model: str, input_tokens: int, output_tokens: int) -> float:
        price = self.worst_by_model.get(model, FREE)
        return (input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / 1e6

    def cost(self, model: str, provider: str, upstream_model: str, usage: Usage) -> float:
        return cost_usd(self.by_deployment.get((model, provider, upstream_model), FREE), usage)
