"""The policy pipeline: steps that admit a request before it goes upstream and settle it after.

Authentication and model authorization happen first (they decide *who* and *which model*);
then each Step's `admit` runs in order (limits, budgets, guards...) and may refuse with an
error; after the response every admitted Step's `settle` runs in reverse order with the
final Exchange (status, usage, timings). `settle` must never raise: it runs after the
client has its answer. The request path (gateway/handle.py) admits and settles in one function.
"""
from __future__ import annotations

import logging
import time
from typing import Protocol

from gatehouse.gateway.exchange import Exchange
from gatehouse.observability.safe import describe

log = logging.getLogger("gatehouse.pipeline")


class Step(Protocol):
    name: str

    async def admit(self, ex: Exchange) -> None: ...
    async def settle(self, ex: Exchange) -> None: ...


class Pipeline:
    def __init__(self, steps: list[Step]):
        self.steps = steps

    async def admit(self, ex: Exchange) -> None:
        done: list[Step] = []
        try:
            for step in self.steps:
                await step.admit(ex)
                done.append(step)
        except BaseException:
            ex.status = ex.status or 0
            for step in reversed(done):
                await _settle_quietly(step, ex)
            raise
        ex.admitted = done

    async def settle(self, ex: Exchange) -> None:
        if ex.finished_at is None:
            ex.finished_at = time.monotonic()
        done, ex.admitted = ex.admitted or [], None
        for step in reversed(done):
            await _settle_quietly(step, ex)


async def _settle_quietly(step: Step, ex: Exchange) -> None:
    try:
        await step.settle(ex)
    except Exception as e:  # settle runs after the client has its answer; never let it escape
        log.error("settle step %s failed for request %s: %s", step.name, ex.request_id, describe(e))
