"""The semantic cache: a stored answer for a last user message that means the same (approximate).

Off unless a `cache:` block has `semantic:` (docs/cache.md#semantic-cache), never for requests
with tools. After an exact miss, the last user message is embedded through the configured
embeddings model, and compared (cosine) with the vectors of the answers stored for the same
*context*: the same tenant, model and parameters, and the same conversation before that message
(a digest of the request without its last message). At or above the threshold the nearest one's
entry answers. The index is in process (a `redis` block shares its entries, not its vectors) and
holds at most `max_entries` vectors per block, and the newest PER_CONTEXT of one context.
"""
from __future__ import annotations

import logging
import math
import operator
import time
from collections import deque
from typing import TYPE_CHECKING

from gatehouse.config import SemanticCacheConfig
from gatehouse.observability.safe import describe
from gatehouse.providers.base import CallContext
from gatehouse.types import ChatRequest, EmbeddingRequest, TextPart

if TYPE_CHECKING:
    from gatehouse.routing.table import ModelEntry

log = logging.getLogger("gatehouse.cache")

PER_CONTEXT = 256  # vectors compared per lookup at most (pure Python: ~50 us each at 1536 dimensions)


def last_user_text(req: ChatRequest) -> str | None:
    """The text of the last message when it is the user's and holds only text; else None."""
    if not req.messages:
        return None
    last = req.messages[-1]
    if last.role != "user" or not last.content or not all(isinstance(p, TextPart) for p in last.content):
        return None
    return " ".join(p.text for p in last.content if isinstance(p, TextPart))


class SemanticIndex:
    __slots__ = ("threshold", "max_entries", "model", "_by_context", "_order")

    def __init__(self, cfg: SemanticCacheConfig, model: ModelEntry):
        self.threshold = cfg.threshold
        self.max_entries = cfg.max_entries
        self.model = model  # the embeddings model
        # context digest -> [(unit vector, store key, expires (monotonic))], oldest first
        self._by_context: dict[str, list[tuple[list[float], str, float]]] = {}
        self._order: deque[tuple[str, str]] = deque()  # (context, key) in insertion order: the bound

    async def embed(self, text: str, request_id: str) -> list[float] | None:
        """The text's unit vector from the first deployment that answers; None when none does."""
        for dep in self.model.deployments:
            provider = dep.embedder
            if provider is None:
                continue
            ctx = CallContext(request_id, self.model.name, dep.upstream_model)
            try:
                resp = await provider.embed(EmbeddingRequest(self.model.name, [text]), ctx)
            except Exception as e:
                log.warning("semantic cache: embedding through %s/%s failed: %s", dep.provider_name,
                            dep.upstream_model, describe(e))
                continue
            if not resp.vectors:
                return None
            return _unit(resp.vectors[0])
        return None

    def nearest(self, context: str, vector: list[float]) -> tuple[str, float] | None:
        """(store key, similarity) of the most similar live vector at or above the threshold."""
        entries = self._by_context.get(context)
        if not entries:
            return None
        now = time.monotonic()
        best: tuple[str, float] | None = None
        for vec, key, expires in entries[-PER_CONTEXT:]:
            if expires <= now or len(vec) != len(vector):
                continue
            sim = sum(map(operator.mul, vec, vector))
            if sim >= self.threshold and (best is None or sim > best[1]):
                best = (key, sim)
        return best

    def add(self, context: str, vector: list[float], key: str, ttl: float) -> None:
        entries = self._by_context.setdefault(context, [])
        entries[:] = [e for e in entries if e[1] != key]
        entries.append((vector, key, time.monotonic() + ttl))
        self._order.append((context, key))
        while len(self._order) > self.max_entries:
            self.forget(*self._order.popleft())

    def forget(self, context: str, key: str) -> None:
        entries = self._by_context.get(context)
        if entries is None:
            return
        entries[:] = [e for e in entries if e[1] != key]
        if not entries:
            del self._by_context[context]

    def clear(self) -> None:
        self._by_context.clear()
        self._order.clear()


def _unit(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v] if norm else v
