"""The small protocols the rest of the gateway sees; SQL and Redis implement them."""
from __future__ import annotations

from typing import Protocol

from msgspec import Struct


class KeyRecord(Struct, frozen=True):
    id: str
    consumer: str
    key_hash: str
    prefix: str
    created_at: float
    revoked_at: float | None = None
    expires_at: float | None = None
    description: str | None = None

    def usable(self, now: float) -> bool:
        if self.revoked_at is not None and self.revoked_at <= now:
            return False
        return self.expires_at is None or self.expires_at > now


class KeyStore(Protocol):
    async def add_key(self, record: KeyRecord) -> None: ...
    async def key_by_hash(self, key_hash: str) -> KeyRecord | None: ...
    async def list_keys(self, consumer: str | None = None) -> list[KeyRecord]: ...
    async def revoke_key(self, key_id: str, at: float) -> KeyRecord | None: ...
    async def set_key_expiry(self, key_id: str, at: float) -> KeyRecord | None: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...
