"""The classifier signal of a rules router: when neither a rule nor the semantic signal decided,
a small configured chat model is asked for one label of the last user message; the label names
the model. Off unless configured; it has a timeout, and a failure, a timeout or an answer
without a known label means the router's default (logged, never an error to the client). The
call is the gateway's own (not metered to the caller).
"""
from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING

from gatehouse.observability.safe import describe
from gatehouse.providers.base import CallContext
from gatehouse.types import ChatRequest, Message, TextPart

if TYPE_CHECKING:
    from gatehouse.config.schema import ClassifierRouteConfig
    from gatehouse.routing.table import ModelEntry

log = logging.getLogger("gatehouse.routing.classifier")

MAX_TEXT = 4000  # characters of the message the classifier sees (the start: usually the ask)


class ClassifierSignal:
    def __init__(self, c: ClassifierRouteConfig):
        self.model = c.model
        self.labels = dict(c.labels)
        self.timeout = c.timeout_seconds
        names = ", ".join(self.labels)
        self.instructions = c.instructions or (
            f"Classify the user's message. Answer with exactly one of these labels and nothing else: {names}.")
        # the earliest label in the answer wins (word boundaries, any case)
        self._find = re.compile(r"(?i)\b(" + "|".join(re.escape(k) for k in
                                                       sorted(self.labels, key=len, reverse=True)) + r")\b")
        self._by_lower = {k.lower(): v for k, v in self.labels.items()}

    async def pick(self, entry: ModelEntry, text: str, request_id: str) -> tuple[str, str] | None:
        """(the model its label names, the label), or None (then the default route)."""
        if not text:
            return None
        try:
            return await asyncio.wait_for(self._ask(entry, text[:MAX_TEXT], request_id), self.timeout)
        except TimeoutError:
            log.warning("classifier routing through %s timed out after %ss: default route", self.model, self.timeout)
        except Exception as e:
            log.warning("classifier routing through %s failed (%s): default route", self.model, describe(e))
        return None

    async def _ask(self, entry: ModelEntry, text: str, request_id: str) -> tuple[str, str] | None:
        last: Exception | None = None
        for dep in entry.deployments:
            req = ChatRequest(model=dep.upstream_model, messages=[Message("user", [TextPart(text)])],
                              system=[TextPart(self.instructions)], max_tokens=16, temperature=0)
            try:
                resp = await dep.provider.chat(req, CallContext(request_id, entry.name, dep.upstream_model, {},
                                                                dep.model_swap))
            except Exception as e:
                last = e
                continue
            answer = " ".join(p.text for p in resp.content if isinstance(p, TextPart))
            m = self._find.search(answer)
            if m is None:
                log.info("classifier %s answered no known label: default route", self.model)
                return None
            label = m.group(1).lower()
            return self._by_lower[label], label
        raise last or RuntimeError(f"model '{entry.name}' has no deployment")
