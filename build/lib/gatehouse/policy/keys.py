"""API key material: generation, HMAC hashing with the server secret, display prefixes."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid

from gatehouse.store.protocols import KeyRecord

KEY_PREFIX = "gh-"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_secret() -> str:
    return secrets.token_hex(32)


def display_prefix(key: str) -> str:
    return key[:8] + "…"


class KeyHasher:
    __slots__ = ("_secret",)

    def __init__(self, secret: str):
        self._secret = secret.encode()

    def hash(self, key: str) -> str:
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()

    def record(self, consumer: str, key: str, description: str | None = None,
               expires_at: float | None = None) -> KeyRecord:
        return KeyRecord(
            id=f"key_{uuid.uuid4().hex[:16]}", consumer=consumer, key_hash=self.hash(key),
            prefix=display_prefix(key), created_at=time.time(), expires_at=expires_at,
            description=description,
        )


def sha256_hex(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
