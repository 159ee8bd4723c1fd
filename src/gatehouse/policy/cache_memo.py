"""Repeated hits: the request bytes a consumer sent before, remembered with what the path made of them.

A hit still walks the whole gateway path: parse the body, resolve the model, build the canonical
request and its estimate, check the bypass rules, hash the key — about a tenth of a hit's CPU, to
arrive at the same key as last time. When a consumer sends the very same bytes to the same route
again (CI jobs, evals and internal tools do), that work is repeated for nothing: a `RequestMemo`
keeps its outcome, keyed by the route, the consumer, its group and the raw body.

What the memo skips is only what the body alone decides: parse, canonical request, estimate, bypass
rules, key. Everything the caller or the moment decides runs as for any request — authentication
(before the memo is read), model access (`ModelTable.resolve` with the caller's principal), the
policy steps in their order (limits: rate, tokens, concurrency, budgets), the store lookup (TTL,
eviction, `DELETE /admin/cache`), the ledger record, metrics and the access log.

When a memo may be used (`RequestMemos.recall`), each checked per request:

- the runtime has no guardrails, no compliance routing and no step that rewrites bodies (decided
  at load: `enabled`); the model is not a virtual one and no guardrail rerouted the request (a memo
  is only made from such a hit);
- the same route (Endpoint), consumer and group, and byte-identical body: the memo never crosses a
  tenant, whatever the block's `scope` (consumer and group are both in the key);
- the directory (groups, consumers, their models, limits and default models) is the one the memos
  were made under (`AccessControl.current` is replaced on every reload; a new one drops them all);
- no `Cache-Control` or `x-gatehouse-cache` request header (those requests take the full path);
- the store still holds a live entry under the key whose wire head was read (`MemoryEntry.memo`)
  and has the request's route and mode (another entry stored under the same key since, by another
  dialect or mode, is answered by the full path).

Memos are made only from hits of an in-process (`memory`) entry answered in the client's own route
and mode. They hold the body bytes and a few fields (no answer: that stays in the store), at most
`MAX_MEMOS` and `MAX_BYTES` of bodies per cache step; past either, all are dropped and refilled by
the next hits. A config reload starts with none; `DELETE /admin/cache` drops them all.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from gatehouse.gateway.endpoint import Endpoint
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.policy.cache_wire import WireEntry
    from gatehouse.policy.principal import Principal
    from gatehouse.routing.table import ModelEntry
    from gatehouse.store.cache_memory import MemoryCache

MAX_MEMOS = 4096
MAX_BYTES = 8 * 1024 * 1024  # of remembered request bodies, per cache step
MAX_BODY = 32 * 1024  # a larger body is not remembered (finding a memo hashes the body: ~0.16 µs a KiB)
_OVERHEAD = 300  # a memo's objects besides its body


def memorable(ex: Exchange) -> bool:
    """A hit whose request may be remembered by its bytes: nothing but the body, the caller and the
    directory decided it (no guardrail, compliance or virtual model choice, no cache header)."""
    headers = ex.request_headers
    return (ex.guard is None and ex.compliance is None and ex.virtual_route is None and not ex.sensitive
            and headers is not None and "cache-control" not in headers and "x-gatehouse-cache" not in headers)


class RequestMemo:
    """What the path made of one request body, for one consumer in one group."""

    __slots__ = ("store", "key", "path", "mode", "stream", "name", "entry", "prompt_estimate", "max_tokens")

    def __init__(self, store: MemoryCache, key: str, path: str, mode: str, stream: bool) -> None:
        # set by the cache step (policy/cache.py) when it answers a hit it may remember
        self.store, self.key, self.path, self.mode, self.stream = store, key, path, mode, stream
        # set by the request path once the hit is answered (gateway/handle.py, `RequestMemos.keep`)
        self.name = ""  # the model name resolved for access (after the group's default model)
        self.entry: ModelEntry | None = None
        self.prompt_estimate = 0
        self.max_tokens: int | None = None  # as asked (the limits step caps it again)


class Recalled:
    """A memo whose entry is live: what the cache step answers with (`Exchange.cache_memo`)."""

    __slots__ = ("memo", "stored", "wire")

    def __init__(self, memo: RequestMemo, stored: float, wire: WireEntry) -> None:
        self.memo, self.stored, self.wire = memo, stored, wire


class RequestMemos:
    """The memos of one cache step (see the module doc)."""

    __slots__ = ("enabled", "_memos", "_lengths", "held", "directory")

    def __init__(self) -> None:
        self.enabled = False  # runtime.py: no guardrails, no compliance routing, no body-rewriting step
        self._memos: dict[tuple[Endpoint, str, str | None, bytes], RequestMemo] = {}
        # body length -> memos of that length: a body of no remembered length is never hashed
        self._lengths: dict[int, int] = {}
        self.held = 0  # bytes
        self.directory: Any = None  # the AccessControl.current every memo was made under

    def __len__(self) -> int:
        return len(self._memos)

    def recall(self, ep: Endpoint, body: bytes, principal: Principal, headers: Mapping[str, str],
               directory: Any) -> Recalled | None:
        if directory is not self.directory:  # groups or consumers changed: what the memos say may not hold
            self.clear()
            return None
        if len(body) not in self._lengths or "cache-control" in headers or "x-gatehouse-cache" in headers:
            return None
        memo = self._memos.get((ep, principal.consumer, principal.group, body))
        if memo is None:
            return None
        found = memo.store.lookup(memo.key)
        kept = found.memo if found is not None else None
        if kept is None:  # expired, evicted, cleared, or stored again and not read yet: the full path
            return None
        stored, wire = kept
        if wire.path != memo.path or wire.mode != memo.mode:
            return None
        return Recalled(memo, stored, wire)

    def keep(self, ep: Endpoint, body: bytes, principal: Principal, memo: RequestMemo, name: str,
             entry: ModelEntry, prompt_estimate: int, max_tokens: int | None, directory: Any) -> None:
        """Remember a hit the full path answered (the cache step made `memo`)."""
        if not self.enabled or len(body) > MAX_BODY:
            return
        if directory is not self.directory:
            self.clear()
            self.directory = directory
        key = (ep, principal.consumer, principal.group, body)
        if key in self._memos:
            return
        size = len(body) + _OVERHEAD
        if len(self._memos) >= MAX_MEMOS or self.held + size > MAX_BYTES:
            self.clear()
        memo.name, memo.entry, memo.prompt_estimate, memo.max_tokens = name, entry, prompt_estimate, max_tokens
        self._memos[key] = memo
        self._lengths[len(body)] = self._lengths.get(len(body), 0) + 1
        self.held += size

    def clear(self) -> None:
        self._memos.clear()
        self._lengths.clear()
        self.held = 0
