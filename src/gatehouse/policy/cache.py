"""The response cache step: an identical request is answered from a store instead of upstream.

Opt-in per model and/or group (`cache:` blocks, docs/cache.md). At admit the step decides whether
the request may be cached at all (safe by default: temperature 0, no tools, n = 1, the client did
not say no-store / no-cache / `x-gatehouse-cache: off`), computes the key and looks it up:

- hit: `ex.cached` is a Reply made from the entry, and gateway/handle.py relays it instead of
  running attempts. An entry in the client's own bytes (policy/cache_wire.py) of the same route and
  mode goes out as it is; any other entry is the canonical answer (read from the bytes when they
  are another dialect's or mode's), relayed through the client's renderer or replayed as a stream
  (policy/cache_replay.py); the output guardrails apply as to any answer;
- miss: `ex.cache` holds a ticket; the request goes upstream as any other (a same-dialect one keeps
  its pass-through), the ticket `tap`s the reply as it goes out (the forwarded bytes, or the
  translated answer or events), and `settle` stores it only when it is complete: status 200, no
  error, no cut stream, no guardrail block, no content-filter finish. Identical misses in flight
  meanwhile wait for it (policy/cache_flights.py).

The key (policy/cache_key.py) of a chat request is a blake2b digest of the canonical request after the gateway's own
rewriting (resolved model, capped max_tokens, messages, system, tools, tool choice, response
format, seed, sampling, stop, reasoning, dialect extras) plus the tenant (group, consumer or
everyone): the same question asked in two dialects shares an entry, two groups never do. Other
cached routes (completions, embeddings, stateless Responses) are keyed on the body as sent, per
route and mode. The step exists only when some model or group has a `cache:` block; requests to
other models pay one dict lookup.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from gatehouse.config import CacheConfig, Config
from gatehouse.gateway.relay import Reply
from gatehouse.observability.safe import describe
from gatehouse.policy.cache_flights import Flights
from gatehouse.policy.cache_key import SHARED_SURFACES, body_digest, bypass_reason, request_digest
from gatehouse.policy.cache_memo import Recalled, RequestMemo, RequestMemos, memorable
from gatehouse.policy.cache_replay import UNSTORABLE, Collector, collecting, replay
from gatehouse.policy.cache_semantic import SemanticIndex, last_user_text
from gatehouse.policy.cache_wire import WireEntry, WireTee, mode_of
from gatehouse.store.cache_memory import MemoryCache, MemoryEntry
from gatehouse.types import ChatRequest, ChatResponse, EmbeddingResponse, Usage

if TYPE_CHECKING:
    from gatehouse.gateway.endpoint import Call
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.observability.metrics import Metrics
    from gatehouse.routing.table import ModelEntry

log = logging.getLogger("gatehouse.cache")

_encode_answer = msgspec.json.Encoder().encode
_decode_answer = msgspec.json.Decoder(ChatResponse).decode
_decode_embedding = msgspec.json.Decoder(EmbeddingResponse).decode

_MEMO_OVERHEAD = 400  # a kept entry head's objects besides its body (MemoryCache.remember)


class CacheStore(Protocol):
    kind: str
    held: int  # bytes held in process (0 for a shared store)

    def key(self, digest: str, model: str, group: str | None) -> str: ...
    async def get(self, key: str) -> bytes | None: ...
    async def put(self, key: str, payload: bytes, ttl: float, model: str, group: str | None) -> None: ...
    async def clear(self, model: str | None = None, group: str | None = None) -> int: ...
    async def close(self) -> None: ...


class CachePolicy:
    """One `cache:` block, compiled once: its settings and its store."""

    __slots__ = ("ttl", "scope", "store", "max_entry_bytes", "allow_temperature", "allow_tools", "semantic",
                 "coalesce")

    def __init__(self, cfg: CacheConfig, store: CacheStore, semantic: SemanticIndex | None = None):
        self.ttl = cfg.ttl_seconds
        self.scope = cfg.scope
        self.store = store
        self.max_entry_bytes = cfg.max_entry_bytes
        self.allow_temperature = cfg.allow_temperature
        self.allow_tools = cfg.allow_tools
        self.semantic = semantic  # policy/cache_semantic.py; None: exact only
        self.coalesce = cfg.coalesce_seconds  # 0: identical misses in flight all go upstream


class CacheTicket:
    """A cacheable miss: where its answer goes once complete (`ex.cache`)."""

    __slots__ = ("policy", "key", "model", "group", "call", "payload", "collector", "wire", "embedding", "semantic",
                 "flight")

    def __init__(self, policy: CachePolicy, key: str, model: str, group: str | None, call: Call | None = None):
        self.policy, self.key, self.model, self.group, self.call = policy, key, model, group, call
        self.payload: bytes | None = None  # a translated unary answer, encoded as it arrived
        self.collector: Collector | None = None  # a translated stream, read as it is relayed
        self.wire: WireTee | None = None  # a forwarded answer: its bytes, as the client gets them
        self.embedding: EmbeddingResponse | None = None  # a translated embeddings answer
        self.semantic: tuple[str, list[float]] | None = None  # (context, vector): indexed once stored
        self.flight: asyncio.Future[bytes | None] | None = None  # identical misses wait on it (Flights)

    def tap(self, reply: Reply) -> Reply:
        """Read the answer on its way to the client (gateway/handle.py calls this on a miss)."""
        result = reply.result
        if result is not None:
            if isinstance(result, ChatResponse):
                if result.stop_reason not in UNSTORABLE:
                    self.payload = b"c " + _encode_answer(result)  # before an output guardrail can redact it
            elif isinstance(result, EmbeddingResponse):
                self.embedding = result
        elif reply.events is not None and reply.first is not None:
            self.collector = Collector()
            reply.events = collecting(reply.first, reply.events, self.collector)
        elif (call := self.call) is not None and call.path is not None:  # forwarded: the bytes are the entry
            self.wire = WireTee(self.policy.max_entry_bytes, call.dialect, call.path, mode_of(call),
                                reply.content_type)
            return self.wire.wrap(reply)
        return reply

    def entry(self, ex: Exchange) -> bytes | None:
        """The entry to store (after the stamp), or None when the answer is not one to store."""
        if self.wire is not None:
            return self.wire.entry(ex.usage)
        if self.payload is not None:
            return self.payload
        if self.collector is not None:
            answer = self.collector.answer(ex.usage)
            if answer is not None:
                return b"c " + _encode_answer(answer)
        if self.embedding is not None:
            return b"e " + _encode_answer(self.embedding)
        return None


class CacheStep:
    name = "cache"

    def __init__(self, models: dict[str, CachePolicy], groups: dict[str, CachePolicy | None],
                 stores: list[CacheStore], metrics: Metrics):
        self.models = models
        self.groups = groups  # None: caching is off for the group
        self.stores = stores
        self.indexes = [p.semantic for p in [*models.values(), *groups.values()]
                        if p is not None and p.semantic is not None]
        self.metrics = metrics
        self.lookups, self.bypasses, self.stored = metrics.track_cache(self.bytes_held)
        # (model, "=result" | "reason" | "+stored") -> its metric series (labels() once per model)
        self._series: dict[tuple[str, str], Any] = {}
        self.flights = Flights()
        self.memos = RequestMemos()  # repeated identical requests (policy/cache_memo.py)

    def bytes_held(self) -> float:
        return float(sum(s.held for s in self.stores if s.kind == "memory"))

    # ---- admit -------------------------------------------------------------------------------

    def policy_for(self, ex: Exchange) -> CachePolicy | None:
        p = ex.principal
        group = p.group if p is not None else None
        if group is not None and group in self.groups:
            gp = self.groups[group]
            if gp is None:
                return None
            return self.models.get(ex.model) or gp
        return self.models.get(ex.model)

    async def admit(self, ex: Exchange) -> None:
        recalled = ex.cache_recalled
        if recalled is not None:  # a repeated request (gateway/handle.py): the live entry its memo found
            self._recalled(ex, recalled)
            return
        policy = self.policy_for(ex)
        if policy is None:
            return
        subject = ex.subject
        headers = ex.request_headers
        reason = bypass_reason(ex, subject, policy, headers)
        if reason is not None:
            self._bypass(ex, reason)
            return
        p = ex.principal
        group = p.group if p is not None else None
        tenant = "*" if policy.scope == "global" else \
            "c:" + (p.consumer if p is not None else "") if policy.scope == "consumer" else "g:" + (group or "")
        call = ex.call
        if ex.surface in SHARED_SURFACES:
            assert isinstance(subject, ChatRequest)
            digest = request_digest(subject, ex.model, ex.max_tokens, tenant, ex.sensitive)
        else:
            assert call is not None
            digest = body_digest(call, subject, ex.model, ex.max_tokens, f"{tenant}\0{ex.surface}", ex.sensitive)
        store = policy.store
        key = store.key(digest, ex.model, group)
        cc = headers.get("cache-control") if headers is not None else None
        if cc is not None and "no-cache" in cc.lower():  # not from the cache, but the fresh answer is stored
            self._bypass(ex, "no_cache")
            ex.cache = CacheTicket(policy, key, ex.model, group, call)
            return
        found: MemoryEntry | None = None
        try:
            if type(store) is MemoryCache:  # (no coroutine per lookup)
                found = store.lookup(key)
                raw = found.payload if found is not None else None
            else:
                raw = await store.get(key)
        except Exception as e:
            log.warning("cache lookup failed (%s): %s", store.kind, describe(e))
            self._bypass(ex, "store_error")
            return
        if found is not None and found.memo is not None:
            stored, wire = found.memo
            if self._same_wire(ex, call, stored, wire, "hit", store, key):
                return  # a hit in the same route and mode, its entry read before
        ticket, result = None, "hit"
        if raw is None and policy.coalesce > 0 and key in self.flights:  # on its way upstream: its answer
            raw, result = await self.flights.wait(key, policy.coalesce), "coalesced"
        if raw is None and policy.semantic is not None and isinstance(subject, ChatRequest) and not subject.tools:
            ticket, result = CacheTicket(policy, key, ex.model, group, call), "semantic_hit"
            raw = await self._semantic(ex, policy, subject, tenant, ticket)
        if raw is None or not await self._hit(ex, raw, result, found, store, key):
            self._count(ex.model, "miss")
            ex.response_headers["x-gatehouse-cache"] = "miss"
            ticket = ex.cache = ticket or CacheTicket(policy, key, ex.model, group, call)
            if policy.coalesce > 0:
                ticket.flight = self.flights.take_off(key)

    def _same_wire(self, ex: Exchange, call: Call | None, stored: float, wire: WireEntry, result: str,
                   memory: CacheStore | None = None, key: str = "") -> bool:
        """The hit of a wire entry in the client's own route and mode: its bytes go out as they are
        (nothing decoded or rendered). False: another route or mode, or output checks that must
        read the answer as events (then `_hit` takes the canonical way)."""
        assert call is not None
        mode = mode_of(call)
        if wire.path != call.path or wire.mode != mode or _needs_events(ex, call):
            return False
        reply = wire.reply()
        if call.stream:  # (the whole stream is there: its first token with it)
            ex.first_token_at = time.monotonic()
        self._answer(ex, call.stream, reply, result, stored, wire.input_tokens, wire.output_tokens)
        if result == "hit" and self.memos.enabled and type(memory) is MemoryCache and memorable(ex):
            ex.cache_memo = RequestMemo(memory, key, wire.path, mode, call.stream)  # kept by gateway/handle.py
        return True

    def _recalled(self, ex: Exchange, recalled: Recalled) -> None:
        """A repeated request's hit: the entry its memo found live (policy/cache_memo.py). Its
        fixed headers are the entry's `hit_head` (gateway/handle.py sends them); `Age` is the
        request's own."""
        if recalled.memo.stream:
            ex.first_token_at = time.monotonic()
        self._count(ex.model, "hit")
        ex.response_headers["age"] = str(max(0, int(time.time() - recalled.stored)))
        ex.cache_hit = True
        ex.cached = recalled.wire.reply()

    async def _hit(self, ex: Exchange, raw: bytes, result: str, found: MemoryEntry | None = None,
                   memory: CacheStore | None = None, key: str = "") -> bool:
        call = ex.call
        assert call is not None
        stamp, _, rest = raw.partition(b" ")
        kind = rest[:2]
        wire: WireEntry | None = None
        answer: ChatResponse | EmbeddingResponse | None = None
        try:
            stored = float(stamp)
            if kind == b"w ":
                wire = WireEntry.parse(rest[2:])
            elif kind == b"e ":
                answer = _decode_embedding(rest[2:])
            else:  # b"c " (or an entry of the version before kinds: the JSON alone)
                answer = _decode_answer(rest[2:] if kind == b"c " else rest)
        except (msgspec.DecodeError, ValueError) as e:  # not ours, or from an incompatible version: a miss
            log.warning("cache entry unreadable (%s): a miss", describe(e))
            return False
        if wire is not None:
            if found is not None and isinstance(memory, MemoryCache):  # the next hits skip the reading above
                memory.remember(found, (stored, wire), len(wire.body) + _MEMO_OVERHEAD)
            if self._same_wire(ex, call, stored, wire, result, memory, key):
                return True
            if ex.surface in SHARED_SURFACES:  # another dialect or mode: read it now
                answer = await wire.to_canonical(ex.model)
                if answer is None:
                    log.warning("cache entry unreadable (%s %s): a miss", wire.dialect, wire.mode)
                    return False
            else:
                return False
        assert answer is not None
        if isinstance(answer, EmbeddingResponse) != (ex.surface == "embeddings"):
            return False
        usage = answer.usage or Usage()
        if call.stream and isinstance(answer, ChatResponse):
            first, rest_events = replay(answer)
            reply = Reply.translated_stream(first, rest_events)
        else:
            reply = Reply.answer(answer)
        self._answer(ex, call.stream, reply, result, stored, str(usage.input_tokens), str(usage.output_tokens))
        return True

    def _answer(self, ex: Exchange, stream: bool, reply: Reply, result: str, stored: float,
                input_tokens: str, output_tokens: str) -> None:
        """A hit: the reply the path relays, its headers and its count."""
        self._count(ex.model, result)
        h = ex.response_headers
        h["x-gatehouse-cache"] = "hit"
        h["age"] = str(max(0, int(time.time() - stored)))
        ex.cache_hit = True
        if not stream:  # the usage headers an upstream answer gets from metering, at no cost
            h["x-gatehouse-tokens-input"] = input_tokens
            h["x-gatehouse-tokens-output"] = output_tokens
            h["x-gatehouse-cost-usd"] = "0"
        ex.cached = reply

    async def _semantic(self, ex: Exchange, policy: CachePolicy, subject: ChatRequest, tenant: str,
                        ticket: CacheTicket) -> bytes | None:
        """After an exact miss: the stored answer whose last user message means the same, if any;
        else the ticket carries the vector to index once the answer is stored."""
        index = policy.semantic
        text = last_user_text(subject)
        if index is None or text is None:
            return None
        vector = await index.embed(text, ex.request_id)
        if vector is None:
            return None
        before = msgspec.structs.replace(subject, messages=subject.messages[:-1])
        context = request_digest(before, ex.model, ex.max_tokens, tenant + "\0semantic", ex.sensitive)
        ticket.semantic = (context, vector)
        found = index.nearest(context, vector)
        if found is None:
            return None
        key, similarity = found
        try:
            raw = await policy.store.get(key)
        except Exception as e:
            log.warning("cache lookup failed (%s): %s", policy.store.kind, describe(e))
            return None
        if raw is None:  # expired, evicted or cleared
            index.forget(context, key)
            return None
        ex.response_headers["x-gatehouse-cache-similarity"] = f"{similarity:.4f}"
        return raw

    def _bypass(self, ex: Exchange, reason: str) -> None:
        ex.response_headers["x-gatehouse-cache"] = "bypass"
        self._count(ex.model, "bypass")
        series = self._series.get((ex.model, reason))
        if series is None:
            series = self._series[(ex.model, reason)] = self.bypasses.labels(self.metrics.model(ex.model), reason)
        series.inc()

    def _count(self, model: str, result: str) -> None:
        series = self._series.get((model, "=" + result))
        if series is None:
            series = self._series[(model, "=" + result)] = self.lookups.labels(self.metrics.model(model), result)
        series.inc()

    # ---- settle ------------------------------------------------------------------------------

    async def settle(self, ex: Exchange) -> None:
        ticket, ex.cache = ex.cache, None
        if ticket is None:
            return
        payload = None
        try:
            if ex.status == 200 and ex.error_type is None:
                entry = ticket.entry(ex)
                if entry is not None and len(entry) <= ticket.policy.max_entry_bytes:
                    payload = b"%.3f " % time.time() + entry
        finally:  # identical requests waiting for this answer: it, or None (they go upstream themselves)
            if ticket.flight is not None:
                self.flights.land(ticket.key, ticket.flight, payload)
        if payload is not None:
            await self._store(ticket, payload)

    async def _store(self, ticket: CacheTicket, payload: bytes) -> None:
        policy = ticket.policy
        try:
            await policy.store.put(ticket.key, payload, policy.ttl, ticket.model, ticket.group)
        except Exception as e:
            log.warning("cache store failed (%s): %s", policy.store.kind, describe(e))
            return
        series = self._series.get((ticket.model, "+stored"))
        if series is None:
            series = self._series[(ticket.model, "+stored")] = self.stored.labels(self.metrics.model(ticket.model))
        series.inc()
        if ticket.semantic is not None and policy.semantic is not None:
            policy.semantic.add(*ticket.semantic, ticket.key, policy.ttl)

    # ---- admin -------------------------------------------------------------------------------

    async def clear(self, model: str | None = None, group: str | None = None) -> int:
        """DELETE /admin/cache: entries of every store, narrowed by model and/or group."""
        n = 0
        self.memos.clear()
        for store in self.stores:
            n += await store.clear(model, group)
        for index in self.indexes:  # (vectors whose entry is gone are dropped when next matched)
            if model is None and group is None:
                index.clear()
        return n

    async def close(self) -> None:
        for store in self.stores:
            await store.close()


def _needs_events(ex: Exchange, call: Call) -> bool:
    """The output guardrails must read this answer as canonical events or hold it for a parallel
    check (as gateway/handle.py decides for pass-through): a stored body cannot go out as it is."""
    guard = ex.guard
    return guard is not None and (guard.pending is not None or (
        guard.plan.checks_output and (call.stream or not call.reads_answers)))


def build_step(cfg: Config, metrics: Metrics, entries: dict[str, ModelEntry]) -> CacheStep | None:
    """The step, or None when no model or group has a `cache:` block (then nothing is added)."""
    blocks = [m.cache for m in cfg.models if m.cache is not None and m.cache.enabled]
    blocks += [g.cache for g in cfg.groups.values() if g.cache is not None and g.cache.enabled]
    if not blocks:
        return None
    stores: list[CacheStore] = []
    redis: CacheStore | None = None

    def compile_block(c: CacheConfig) -> CachePolicy:
        nonlocal redis
        semantic = SemanticIndex(c.semantic, entries[c.semantic.model]) if c.semantic is not None else None
        if c.backend == "redis":
            if redis is None:
                from gatehouse.store.cache_redis import RedisCache  # redis-py only when used

                assert cfg.store.redis_url is not None  # (config_check)
                redis = RedisCache(cfg.store.redis_url)
                stores.append(redis)
            return CachePolicy(c, redis, semantic)
        store = MemoryCache(c.max_bytes)
        stores.append(store)
        return CachePolicy(c, store, semantic)

    models = {m.name: compile_block(m.cache) for m in cfg.models if m.cache is not None and m.cache.enabled}
    groups: dict[str, CachePolicy | None] = {
        name: compile_block(g.cache) if g.cache.enabled else None
        for name, g in cfg.groups.items() if g.cache is not None
    }
    return CacheStep(models, groups, stores, metrics)
