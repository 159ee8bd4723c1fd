"""API keys: consumer keys from the config file and from the store, the chain's last link.

Keys are looked up by their HMAC digest, so the lookup itself reveals nothing about stored
hashes; the found hash is still compared in constant time. Missing, unknown, revoked and
expired keys get the same error, and every path computes one HMAC, so they also cost the same.

Store lookups are cached for `CACHE_SECONDS`, positive and negative: a key revoked on
another replica stops working within that time; on this replica immediately (`forget`).
"""
from __future__ import annotations

import hmac
import time
from collections.abc import Callable

from gatehouse.errors import AuthenticationFailed, ServiceUnavailable
from gatehouse.policy.auth import INVALID_KEY
from gatehouse.policy.keys import KeyHasher, sha256_hex
from gatehouse.policy.principal import Principal
from gatehouse.store.protocols import KeyRecord, KeyStore

CACHE_SECONDS = 0.5
_CACHE_MAX = 100_000


class KeyAuth:
    """An Authenticator that claims every credential: a key it does not know is refused (401)."""

    def __init__(
        self,
        hasher: KeyHasher,
        store: KeyStore,
        config_keys: dict[str, str],  # hmac digest -> consumer
        config_sha256: dict[str, str],  # sha256 hex -> consumer
        principal_for: Callable[[str, str], Principal],  # (consumer, key_id) -> Principal
    ):
        self.hasher = hasher
        self.store = store
        self.config_keys = config_keys
        self.config_sha256 = config_sha256
        self.principal_for = principal_for
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}

    def forget(self, key_hash: str | None = None) -> None:
        if key_hash is None:
            self._cache.clear()
        else:
            self._cache.pop(key_hash, None)

    async def authenticate(self, credential: str) -> Principal:
        digest = self.hasher.hash(credential)
        if not credential:
            raise AuthenticationFailed(INVALID_KEY)
        consumer = self.config_keys.get(digest)
        if consumer is not None:
            return self.principal_for(consumer, "config:" + digest[:12])
        if self.config_sha256:
            consumer = self.config_sha256.get(sha256_hex(credential))
            if consumer is not None:
                return self.principal_for(consumer, "config:" + digest[:12])
        record = await self._lookup(digest)
        now = time.time()
        if record is None or not hmac.compare_digest(record.key_hash, digest) or not record.usable(now):
            raise AuthenticationFailed(INVALID_KEY)
        return self.principal_for(record.consumer, record.id)

    async def _lookup(self, digest: str) -> KeyRecord | None:
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            record = await self.store.key_by_hash(digest)
        except Exception:
            raise ServiceUnavailable("The key store is unavailable; try again shortly.",
                                     code="store_unavailable") from None
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[digest] = (now + CACHE_SECONDS, record)
        return record
