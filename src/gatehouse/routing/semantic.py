"""The semantic signal of a rules router: when no rule decides, the last user message's
embedding (through any configured embeddings model) is compared with each route's centroid (the
mean embedding of its example utterances); the nearest route wins if it is similar enough.

Centroids are embedded once, on first use (the embedding upstream need not be up when the
gateway starts) and kept for the runtime's life. The whole signal has a timeout; a failure or a
timeout is logged and the router falls back to its `default` (never an error to the client).
The embedding call is not metered (it is the gateway's own cost, like a guard model's check).
"""
from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING

from gatehouse.observability.safe import describe
from gatehouse.providers.base import CallContext
from gatehouse.types import EmbeddingRequest

if TYPE_CHECKING:
    from gatehouse.config.schema import SemanticRouteConfig
    from gatehouse.routing.table import ModelEntry

log = logging.getLogger("gatehouse.routing.semantic")


def _unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / n for x in v]


def _mean(vs: list[list[float]]) -> list[float]:
    return _unit([sum(col) / len(vs) for col in zip(*vs)])


class SemanticSignal:
    def __init__(self, c: SemanticRouteConfig):
        self.model = c.model
        self.routes = [(name, list(examples)) for name, examples in c.routes.items()]
        self.min_similarity = c.min_similarity
        self.timeout = c.timeout_seconds
        self._centroids: list[tuple[str, list[float]]] | None = None
        self._lock = asyncio.Lock()

    async def pick(self, entry: ModelEntry, text: str, request_id: str) -> tuple[str, float] | None:
        """(the nearest route's model, its cosine similarity), or None: too far, no text, or
        the embedding failed or timed out."""
        if not text:
            return None
        try:
            return await asyncio.wait_for(self._pick(entry, text, request_id), self.timeout)
        except TimeoutError:
            log.warning("semantic routing through %s timed out after %ss: default route", self.model, self.timeout)
        except Exception as e:
            log.warning("semantic routing through %s failed (%s): default route", self.model, describe(e))
        return None

    async def _pick(self, entry: ModelEntry, text: str, request_id: str) -> tuple[str, float] | None:
        centroids = self._centroids
        if centroids is None:
            async with self._lock:
                if self._centroids is None:
                    flat = [(name, ex) for name, examples in self.routes for ex in examples]
                    vectors = await _embed(entry, [ex for _, ex in flat], request_id)
                    by_route: dict[str, list[list[float]]] = {}
                    for (name, _), v in zip(flat, vectors):
                        by_route.setdefault(name, []).append(_unit(v))
                    self._centroids = [(name, _mean(vs)) for name, vs in by_route.items()]
                centroids = self._centroids
        [vec] = await _embed(entry, [text], request_id)
        u = _unit(vec)
        best, best_sim = "", -2.0
        for name, c in centroids:
            sim = sum(a * b for a, b in zip(u, c))
            if sim > best_sim:
                best, best_sim = name, sim
        return (best, best_sim) if best and best_sim >= self.min_similarity else None


async def _embed(entry: ModelEntry, texts: list[str], request_id: str) -> list[list[float]]:
    last: Exception | None = None
    for dep in entry.deployments:
        if dep.embedder is None:
            continue
        ctx = CallContext(request_id, entry.name, dep.upstream_model, {}, dep.model_swap)
        try:
            resp = await dep.embedder.embed(EmbeddingRequest(model=dep.upstream_model, input=texts), ctx)
        except Exception as e:
            last = e
            continue
        return resp.vectors
    raise last or RuntimeError(f"model '{entry.name}' has no deployment that embeds")
