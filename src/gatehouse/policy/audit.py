"""Who changed access, and how: every admin action (admin API and CLI) is written to the
audit log in the store and as one log line (logger `gatehouse.audit`).

An AuditTrail is made per admin request or CLI command and knows the actor; the code that
makes a change calls `record(action, target, detail)` once it has succeeded. Details are
ids, names and settings - callers never pass a key or a key hash.
"""
from __future__ import annotations

import getpass
import json
import logging
import socket
import time
from typing import Any

from gatehouse.observability.safe import describe
from gatehouse.store.audit_sql import AuditEntry, AuditStore
from gatehouse.store.sql import SqlStore

log = logging.getLogger("gatehouse.audit")

ADMIN_API_ACTOR = "admin-key"  # the one admin credential (admin.key) the admin API knows


class AuditTrail:
    def __init__(self, store: SqlStore, actor: str, source: str | None = None, request_id: str | None = None):
        self.store = AuditStore(store)
        self.actor = actor
        self.source = source
        self.request_id = request_id

    @classmethod
    def for_cli(cls, store: SqlStore) -> AuditTrail:
        try:
            user = getpass.getuser()
        except Exception:  # no login name (a container without one): still a record
            user = "unknown"
        return cls(store, f"cli:{user}", socket.gethostname())

    async def record(self, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
        detail = detail or {}
        entry = AuditEntry(ts=time.time(), actor=self.actor, action=action, target=target, detail=detail,
                           source=self.source, request_id=self.request_id)
        # The line goes out first, so a store that fails now still leaves the record in the log.
        log.info("audit %s", json.dumps({"action": action, "target": target, "actor": self.actor,
                                         "source": self.source, "request_id": self.request_id,
                                         "detail": detail}, ensure_ascii=True, default=str))
        try:
            await self.store.add(entry)
        except Exception as e:  # the change itself is done; say loudly that its record is not stored
            log.error("could not store the audit record of %s on %r: %s", action, target, describe(e))
