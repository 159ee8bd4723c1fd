"""The in-process LRU's bound holds with kept entry heads (MemoryCache.remember): a hit's memo is
counted with its entry, pushes out the least recently used entries when over the bound, is never
kept on an entry that is gone or that would not fit alone, and goes with its entry."""
from __future__ import annotations

import asyncio

from gatehouse.store.cache_memory import _OVERHEAD, MemoryCache


def run(coro):
    return asyncio.run(coro)


def test_a_memo_is_counted_and_goes_with_its_entry():
    cache = MemoryCache(10_000)
    run(cache.put("a", b"x" * 100, 60, "m", "g"))
    base = cache.held
    assert base == 100 + 1 + _OVERHEAD
    e = cache.lookup("a")
    assert e is not None and e.memo is None
    cache.remember(e, "head", 150)
    assert e.memo == "head" and cache.held == base + 150
    cache.remember(e, "again", 150)  # kept once
    assert e.memo == "head" and cache.held == base + 150
    run(cache.put("a", b"y" * 100, 60, "m", "g"))  # replaced: the new entry has no memo, the old bytes are gone
    fresh = cache.lookup("a")
    assert fresh is not None and fresh.memo is None and cache.held == base
    assert run(cache.clear()) == 1 and cache.held == 0


def test_a_memo_over_the_bound_evicts_the_least_recently_used():
    size = 100 + 1 + _OVERHEAD
    cache = MemoryCache(3 * size)
    for k in "abc":
        run(cache.put(k, b"x" * 100, 60, "m", None))
    e = cache.lookup("c")
    assert e is not None
    cache.remember(e, "head", size // 2)
    assert cache.lookup("a") is None and cache.lookup("b") is not None  # the oldest went
    assert cache.held == 2 * size + size // 2 <= cache.max_bytes


def test_no_memo_on_an_entry_that_is_gone_or_would_not_fit_alone():
    cache = MemoryCache(1_000)
    run(cache.put("a", b"x" * 100, 60, "m", None))
    e = cache.lookup("a")
    assert e is not None
    held = cache.held
    cache.remember(e, "head", 1_000)  # the entry alone would be over the bound
    assert e.memo is None and cache.held == held
    run(cache.clear())
    cache.remember(e, "head", 10)  # cleared meanwhile: nothing is counted
    assert e.memo is None and cache.held == 0
