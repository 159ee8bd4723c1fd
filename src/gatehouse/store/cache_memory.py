"""The in-process response cache: an LRU bounded by the bytes of the answers it holds, with TTL.

Entries are the stored bytes (policy/cache.py encodes them), so what is counted is what is held
and a hit decodes a fresh copy (output guardrails may redact an answer in place). Expired entries
are dropped when read and, oldest first, when room is needed. One instance per `cache:` block.

`lookup` is the step's synchronous read (no coroutine per hit); an entry's `memo` holds what the
step read from its bytes once (a wire entry's head and body: immutable, so every later hit reuses
it). `remember` counts the memo's bytes with the entry's, so `max_bytes` bounds them too.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

# Rough per-entry overhead besides the payload: key, tuple, dict slot.
_OVERHEAD = 200


class MemoryEntry:
    __slots__ = ("key", "expires", "payload", "model", "group", "size", "memo")

    def __init__(self, key: str, expires: float, payload: bytes, model: str, group: str | None, size: int) -> None:
        self.key = key
        self.expires = expires  # monotonic
        self.payload = payload
        self.model = model
        self.group = group
        self.size = size
        self.memo: Any = None  # (policy/cache.py) the payload as read on the first hit (`remember`)


class MemoryCache:
    kind = "memory"

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.held = 0  # held now (gatehouse_cache_bytes)
        self._entries: OrderedDict[str, MemoryEntry] = OrderedDict()

    @staticmethod
    def key(digest: str, model: str, group: str | None) -> str:
        return digest  # (the tenant and model are inside the digest; kept on the entry to clear by them)

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        e = self.lookup(key)
        return None if e is None else e.payload

    def lookup(self, key: str) -> MemoryEntry | None:
        """The live entry (now the most recently used), or None."""
        e = self._entries.get(key)
        if e is None:
            return None
        if e.expires <= time.monotonic():
            self._drop(key, e)
            return None
        self._entries.move_to_end(key)
        return e

    async def put(self, key: str, payload: bytes, ttl: float, model: str, group: str | None) -> None:
        size = len(payload) + len(key) + _OVERHEAD
        if size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.held -= old.size
        entries = self._entries
        while self.held + size > self.max_bytes and entries:
            _, evicted = entries.popitem(last=False)  # least recently used
            self.held -= evicted.size
        entries[key] = MemoryEntry(key, time.monotonic() + ttl, payload, model, group, size)
        self.held += size

    def remember(self, e: MemoryEntry, memo: Any, size: int) -> None:
        """Keep `memo` on a live entry, holding `size` bytes more (least recently used entries go
        when that is over the bound); not when the entry alone would be over it."""
        entries = self._entries
        if e.memo is not None or entries.get(e.key) is not e or e.size + size > self.max_bytes:
            return
        e.memo = memo
        e.size += size
        self.held += size
        entries.move_to_end(e.key)
        while self.held > self.max_bytes:
            _, evicted = entries.popitem(last=False)  # (never `e`: it is the most recent, and fits)
            self.held -= evicted.size

    async def clear(self, model: str | None = None, group: str | None = None) -> int:
        doomed = [k for k, e in self._entries.items()
                  if (model is None or e.model == model) and (group is None or e.group == group)]
        for k in doomed:
            self._drop(k, self._entries[k])
        return len(doomed)

    async def close(self) -> None:
        return None

    def _drop(self, key: str, e: MemoryEntry) -> None:
        del self._entries[key]
        self.held -= e.size
