"""Stored Responses API responses (`store: true`), owned by the consumer that made them.

A row in `stored_responses` holds the response object as it was sent; `stored_response_items`
holds, in order, the input items the response was given (the items of the response named by
`previous_response_id` first, item references resolved) and then its output items. So a
response's whole conversation is its own rows, and a later `previous_response_id` or
`item_reference` needs one indexed read. Rows live `responses.store_ttl_seconds`; reads skip
expired rows and writes purge them, at most once per PURGE_EVERY seconds per process.

Writes never hold up an answer: `save` schedules them on the event loop and the reply goes out
at once. Reads in the same process wait for a pending write of the response they ask for, so a
GET right after the answer finds it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from gatehouse.observability.safe import describe
from gatehouse.store.schema import stored_response_items, stored_responses
from gatehouse.store.sql import SqlStore

log = logging.getLogger("gatehouse.responses")

PURGE_EVERY = 600.0
MAX_ITEM_ID = 255

_encode = msgspec.json.encode
_decode = msgspec.json.decode


class ResponseStore:
    def __init__(self, store: SqlStore, ttl_seconds: float):
        self.engine = store.engine
        self.ttl = ttl_seconds
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._last_purge = 0.0

    # ---- writing -----------------------------------------------------------------------------

    def save(self, consumer: str, response: dict[str, Any], input_items: Sequence[dict[str, Any]]) -> None:
        """Keep a finished response, in the background; errors are logged, never raised."""
        rid = str(response["id"])
        task = asyncio.get_running_loop().create_task(self._write(consumer, rid, response, list(input_items)))
        self._pending[rid] = task
        task.add_done_callback(lambda t: self._written(rid, t))

    def _written(self, rid: str, task: asyncio.Task[None]) -> None:
        if self._pending.get(rid) is task:
            del self._pending[rid]
        if not task.cancelled() and task.exception() is not None:
            log.error("storing response %s failed: %s", rid, describe(task.exception()))  # type: ignore[arg-type]

    async def _write(self, consumer: str, rid: str, response: dict[str, Any],
                     input_items: list[dict[str, Any]]) -> None:
        now = time.time()
        rows = [{"response_id": rid, "position": i, "kind": kind, "item_id": str(item.get("id", "")),
                 "consumer": consumer, "item": _encode(item).decode()}
                for i, (kind, item) in enumerate([*(("input", x) for x in input_items),
                                                   *(("output", x) for x in response.get("output") or [])])]
        async with self.engine.begin() as conn:
            await conn.execute(stored_responses.insert().values(
                id=rid, consumer=consumer, created_at=now, expires_at=now + self.ttl, body=_encode(response).decode()))
            if rows:
                await conn.execute(stored_response_items.insert(), rows)
        if now - self._last_purge >= PURGE_EVERY:
            self._last_purge = now
            await self.purge(now)

    async def purge(self, now: float | None = None) -> int:
        """Delete expired responses and their items; returns how many responses went."""
        now = time.time() if now is None else now
        expired = sa.select(stored_responses.c.id).where(stored_responses.c.expires_at <= now)
        async with self.engine.begin() as conn:
            await conn.execute(stored_response_items.delete().where(stored_response_items.c.response_id.in_(expired)))
            result = await conn.execute(stored_responses.delete().where(stored_responses.c.expires_at <= now))
        return int(result.rowcount or 0)

    async def flush(self) -> None:
        """Wait for the writes in flight (shutdown)."""
        if self._pending:
            await asyncio.gather(*list(self._pending.values()), return_exceptions=True)

    async def _settled(self, rid: str | None = None) -> None:
        task = self._pending.get(rid) if rid is not None else None
        if task is not None:
            await asyncio.gather(asyncio.shield(task), return_exceptions=True)
        elif rid is None:
            await self.flush()

    # ---- reading -----------------------------------------------------------------------------

    def _owned(self, rid: str, consumer: str) -> Any:
        t = stored_responses.c
        return sa.and_(t.id == rid, t.consumer == consumer, t.expires_at > time.time())

    async def get(self, rid: str, consumer: str) -> dict[str, Any] | None:
        await self._settled(rid)
        async with self.engine.connect() as conn:
            body = (await conn.execute(sa.select(stored_responses.c.body).where(self._owned(rid, consumer)))).scalar()
        return _decode(body) if body is not None else None

    async def conversation(self, rid: str, consumer: str) -> list[dict[str, Any]] | None:
        """The input items then the output items of a response the consumer owns; None: no such response."""
        await self._settled(rid)
        i = stored_response_items.c
        async with self.engine.connect() as conn:
            if (await conn.execute(sa.select(stored_responses.c.id).where(self._owned(rid, consumer)))).first() is None:
                return None
            rows = (await conn.execute(sa.select(i.item).where(i.response_id == rid).order_by(i.position))).all()
        return [_decode(r.item) for r in rows]

    async def items_by_id(self, item_ids: Sequence[str], consumer: str) -> dict[str, dict[str, Any]]:
        """Stored items of the consumer's live responses, by item id (for `item_reference`)."""
        await self._settled()
        i, r = stored_response_items.c, stored_responses.c
        q = (sa.select(i.item_id, i.item).join_from(stored_response_items, stored_responses, i.response_id == r.id)
             .where(i.consumer == consumer, i.item_id.in_(list(set(item_ids))), r.consumer == consumer,
                    r.expires_at > time.time()))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return {row.item_id: _decode(row.item) for row in rows}

    async def input_items(self, rid: str, consumer: str, *, after: str | None, limit: int,
                          descending: bool) -> tuple[list[dict[str, Any]], bool] | None:
        """One page of a response's input items and whether more follow; None: no such response."""
        await self._settled(rid)
        i = stored_response_items.c
        q = sa.select(i.item).where(i.response_id == rid, i.kind == "input")
        async with self.engine.connect() as conn:
            if (await conn.execute(sa.select(stored_responses.c.id).where(self._owned(rid, consumer)))).first() is None:
                return None
            if after is not None:
                pos = (await conn.execute(sa.select(i.position).where(
                    i.response_id == rid, i.kind == "input", i.item_id == after).order_by(i.position))).scalar()
                if pos is None:
                    return [], False
                q = q.where(i.position < pos if descending else i.position > pos)
            q = q.order_by(i.position.desc() if descending else i.position).limit(limit + 1)
            rows = (await conn.execute(q)).all()
        return [_decode(r.item) for r in rows[:limit]], len(rows) > limit

    async def delete(self, rid: str, consumer: str) -> bool:
        await self._settled(rid)
        async with self.engine.begin() as conn:
            gone = await conn.execute(stored_responses.delete().where(self._owned(rid, consumer)))
            if not gone.rowcount:
                return False
            await conn.execute(stored_response_items.delete().where(stored_response_items.c.response_id == rid))
        return True
