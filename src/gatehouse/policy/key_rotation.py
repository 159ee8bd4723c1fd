"""Key rotation: a new key for the same consumer while the old one keeps working for a grace
period, so clients can switch over without an outage. Used by the admin API and the CLI."""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from gatehouse.errors import Conflict, NotFound
from gatehouse.policy.keys import KeyHasher, new_key
from gatehouse.store.protocols import KeyRecord
from gatehouse.store.sql import SqlStore


async def rotate(store: SqlStore, hasher: KeyHasher, key_id: str, grace_seconds: float,
                 description: str | None = None,
                 require_consumer: Callable[[Any], Awaitable[str]] | None = None,
                 ) -> tuple[KeyRecord, str, KeyRecord]:
    """(new record, new plaintext key, old record with its new expiry). `require_consumer`
    refuses a key whose consumer is defined nowhere: rotation never mints an orphan key."""
    old = await store.key_by_id(key_id)
    if old is None:
        raise NotFound(f"No key with id '{key_id}'.", code="key_not_found")
    now = time.time()
    if not old.usable(now):
        raise Conflict(f"Key '{key_id}' is revoked or expired; create a new key instead.", code="key_inactive")
    if require_consumer is not None:
        await require_consumer(old.consumer)
    key = new_key()
    new = hasher.record(old.consumer, key, description or old.description, old.expires_at)
    await store.add_key(new)
    ends = now + grace_seconds
    if old.expires_at is None or old.expires_at > ends:
        old = await store.set_key_expiry(old.id, ends) or old
    return new, key, old
