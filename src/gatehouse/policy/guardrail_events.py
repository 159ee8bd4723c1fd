"""Guardrail events in the audit log: one row per check that matched a request (block, redact,
flag, reroute), next to the admin actions, so the admin UI's Audit page and GET /admin/audit
show them. Never the matched text: the row names the policy, the check, its action and stage,
and who asked for which model.

Why off the request path: the verdicts are known when the guardrail step settles; writing
them there would add a store round trip to the request. `note` only appends rows to a list
(a request where nothing matched costs one pass over its non-pass verdicts, none with the
guardrails' per-outcome audit); a task started by the first row writes the batch after
`FLUSH_SECONDS` in one INSERT. A store that fails loses the batch and logs it; the request
never sees it. At most `MAX_PENDING` rows wait; more are dropped and counted in the log.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from gatehouse.observability.safe import describe
from gatehouse.store.schema import audit_log

if TYPE_CHECKING:
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.policy.guardrails.step import Guard
    from gatehouse.store.sql import SqlStore

log = logging.getLogger("gatehouse.audit")

ACTOR = "guardrails"  # the actor of every guardrail event; admin actions have a person or key
ACTION_PREFIX = "guardrail."  # guardrail.block, guardrail.redact, guardrail.flag, guardrail.reroute
FLUSH_SECONDS = 0.5
MAX_PENDING = 10_000

OnVerdicts = Callable[["Guard", "Exchange"], None]


class GuardrailEvents:
    def __init__(self, store: SqlStore, flush_seconds: float = FLUSH_SECONDS):
        self.engine = store.engine
        self.flush_seconds = flush_seconds
        self._rows: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()  # set by close: a waiting batch is written at once
        self.dropped = 0

    def wrap(self, on_verdicts: OnVerdicts) -> OnVerdicts:
        """The guardrail step's settle callback, then this record of its matches."""
        note = self.note

        def recorded(guard: Guard, ex: Exchange) -> None:
            on_verdicts(guard, ex)
            if guard.verdicts:  # (none: nothing matched, no row)
                note(guard, ex)

        return recorded

    def note(self, guard: Guard, ex: Exchange) -> None:
        rows: list[dict[str, Any]] | None = None
        for (check, stage), (verdict, action, category, policy) in guard.verdicts.items():
            if verdict != "match":
                continue
            if rows is None:
                rows = []
            p = ex.principal
            detail = {"policy": policy, "check": check, "action": action, "stage": stage, "category": category,
                      "model": ex.model, "deployment": ex.deployment or None,
                      "group": p.group if p is not None else None,
                      "consumer": p.consumer if p is not None else None}
            rows.append({"id": os.urandom(16).hex(), "ts": time.time(), "actor": ACTOR,
                         "source": detail["consumer"], "action": ACTION_PREFIX + action,
                         "target": f"{policy}/{check}"[:200], "detail": msgspec.json.encode(detail).decode(),
                         "request_id": ex.gateway_id[:128]})
        if rows is not None:
            self._add(rows)

    def _add(self, rows: list[dict[str, Any]]) -> None:
        room = MAX_PENDING - len(self._rows)
        if room < len(rows):
            self.dropped += len(rows) - max(room, 0)
            rows = rows[:max(room, 0)]
        self._rows.extend(rows)
        if self._task is None and self._rows:
            self._task = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        try:
            await asyncio.wait_for(self._closing.wait(), self.flush_seconds)
        except TimeoutError:
            pass
        await self.flush()
        self._task = None
        if self._rows:  # noted while the batch was written
            self._task = asyncio.get_running_loop().create_task(self._flush_later())

    async def flush(self) -> None:
        rows, self._rows = self._rows, []
        dropped, self.dropped = self.dropped, 0
        if dropped:
            log.error("%d guardrail events were not stored: more than %d waited", dropped, MAX_PENDING)
        if not rows:
            return
        try:
            async with self.engine.begin() as conn:
                await conn.execute(audit_log.insert(), rows)
        except Exception as e:  # the requests are answered; their events are in the access log
            log.error("could not store %d guardrail events in the audit log: %s", len(rows), describe(e))

    async def close(self) -> None:
        """Write what waits now (a batch being written is awaited, not cut); rows noted after
        this are written at once."""
        self._closing.set()
        while self._task is not None:
            await self._task
        await self.flush()

HEADER = "x-gatehouse-guardrails"


def verdict_header(ex: Exchange) -> None:
    """Tell the caller which checks matched so far: `x-gatehouse-guardrails: <policy>/<check>:<action>, ...`
    (matches only, never the text; unset when none matched). Set after admission (the input checks)
    and again before a non-streamed answer goes out (the output checks); a stream's output checks
    decide after its headers are sent (GET /admin/requests/{id} has them)."""
    guard = ex.guard
    if guard is None or not guard.verdicts:  # (nothing matched: the common case, twice per request)
        return
    found = {f"{policy}/{check}:{action}" for (check, _stage), (verdict, action, _category, policy)
             in guard.verdicts.items() if verdict == "match"}
    if found:
        ex.response_headers[HEADER] = ", ".join(sorted(found))
