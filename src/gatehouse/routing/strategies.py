"""Routing strategies: the order in which a model's deployments are tried.

A strategy is one small class with `order(deployments, ex)`; `STRATEGIES` names them for
runtime.py, which hands the chosen one to the Router (routing/router.py), where breakers filter
the order lazily. Weighted, least-inflight and latency strategies plug in here (CONTRIBUTING.md).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.routing.table import Deployment


class Strategy(Protocol):
    def order(self, deployments: tuple[Deployment, ...], ex: Exchange) -> Iterable[Deployment]: ...


class Ordered:
    """The configured order: the first deployment first, the others as fallbacks."""

    __slots__ = ()

    def order(self, deployments: tuple[Deployment, ...], ex: Exchange) -> Iterable[Deployment]:
        return deployments


STRATEGIES: dict[str, type[Strategy]] = {"ordered": Ordered}
