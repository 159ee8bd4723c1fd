"""The audit log: one row per admin action (create, update, revoke, rotate, delete of keys,
groups and consumers), next to the keys in the SQL store; and one per guardrail match
(actor `guardrails`, action `guardrail.<action>`: policy/guardrail_events.py).

A row says who (the admin principal: `admin-key` for the admin API, `cli:<user>` for the
CLI), from where, what, on which target, when, and the fields given - never a key or a key
hash: callers pass only ids, names and settings.
"""
from __future__ import annotations

import os
from typing import Any

import msgspec
import sqlalchemy as sa

from gatehouse.store.schema import audit_log
from gatehouse.store.sql import SqlStore

MAX_LIMIT = 1000
GUARDRAIL_PREFIX = "guardrail."  # the actions of guardrail events (policy/guardrail_events.py)
KINDS = ("admin", "guardrail")


class AuditEntry(msgspec.Struct, frozen=True):
    ts: float
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    source: str | None = None
    request_id: str | None = None
    id: str = ""

    def view(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)


class AuditStore:
    def __init__(self, store: SqlStore):
        self.engine = store.engine

    async def add(self, entry: AuditEntry) -> AuditEntry:
        entry = msgspec.structs.replace(entry, id=entry.id or os.urandom(16).hex())
        async with self.engine.begin() as conn:
            await conn.execute(audit_log.insert().values(
                id=entry.id, ts=entry.ts, actor=entry.actor, source=entry.source, action=entry.action,
                target=entry.target, detail=msgspec.json.encode(entry.detail).decode(), request_id=entry.request_id))
        return entry

    async def query(self, *, since: float, until: float | None = None, actor: str | None = None,
                    action: str | None = None, target: str | None = None, kind: str | None = None,
                    request_id: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """Newest first. `action` matches exactly, or a whole family with a trailing '.*' (`key.*`);
        `kind`: admin actions only (`admin`) or guardrail events only (`guardrail`)."""
        t = audit_log.c
        q = sa.select(audit_log).where(t.ts >= since)
        if until is not None:
            q = q.where(t.ts < until)
        if actor is not None:
            q = q.where(t.actor == actor)
        if action is not None:
            q = q.where(t.action.startswith(action[:-1], autoescape=True) if action.endswith(".*")
                        else t.action == action)
        if target is not None:
            q = q.where(t.target == target)
        if kind == "guardrail":
            q = q.where(t.action.startswith(GUARDRAIL_PREFIX, autoescape=True))
        elif kind == "admin":
            q = q.where(sa.not_(t.action.startswith(GUARDRAIL_PREFIX, autoescape=True)))
        if request_id is not None:
            q = q.where(t.request_id == request_id)
        q = q.order_by(t.ts.desc(), t.id).limit(max(1, min(limit, MAX_LIMIT)))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [AuditEntry(ts=r.ts, actor=r.actor, action=r.action, target=r.target,
                           detail=msgspec.json.decode(r.detail), source=r.source, request_id=r.request_id, id=r.id)
                for r in rows]
