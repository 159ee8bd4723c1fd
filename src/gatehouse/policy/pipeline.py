"""The policy pipeline: steps that admit a request before it goes upstream and settle it after.

Authentication and model authorization happen first (they decide *who* and *which model*);
then each Step's `admit` runs in order (limits, budgets, guards...) and may refuse with an
error; after the response every admitted Step's `settle` runs in reverse order with the
final Exchange (status, usage, timings). `settle` must never raise: it runs after the
client has its answer.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from gatehouse.observability.safe import describe
from gatehouse.policy.principal import Principal
from gatehouse.types import Usage

log = logging.getLogger("gatehouse.pipeline")


class Exchange:
    """Everything known about one request, filled in as it moves along the path."""

    __slots__ = (
        "request_id", "surface", "dialect", "principal", "model", "deployment", "provider",
        "stream", "status", "usage", "started", "first_token_at", "finished_at",
        "prompt_estimate", "max_tokens", "response_headers", "notes", "error_type",
        "gateway_id", "client_request_id",
    )

    def __init__(self, request_id: str, surface: str, dialect: str, gateway_id: str | None = None,
                 client_request_id: str | None = None):
        self.request_id = request_id  # the id the client sees (its own x-request-id when it sent one)
        self.gateway_id = gateway_id or request_id  # ours, unique per request: what the ledger counts
        self.client_request_id = client_request_id  # the client's x-request-id, for correlation only
        self.surface = surface  # chat | completions | embeddings | messages | ...
        self.dialect = dialect
        self.principal: Principal | None = None
        self.model = ""
        self.deployment = ""
        self.provider = ""
        self.stream = False
        self.status = 0
        self.usage: Usage | None = None
        self.started = time.monotonic()
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.prompt_estimate = 0
        self.max_tokens: int | None = None
        self.response_headers: dict[str, str] = {}
        self.notes: dict[str, Any] = {}  # per-step state (e.g. a limits reservation)
        self.error_type: str | None = None


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
        ex.notes["_admitted"] = done

    async def settle(self, ex: Exchange) -> None:
        if ex.finished_at is None:
            ex.finished_at = time.monotonic()
        for step in reversed(ex.notes.pop("_admitted", ())):
            await _settle_quietly(step, ex)


async def _settle_quietly(step: Step, ex: Exchange) -> None:
    try:
        await step.settle(ex)
    except Exception as e:  # settle runs after the client has its answer; never let it escape
        log.error("settle step %s failed for request %s: %s", step.name, ex.request_id, describe(e))
