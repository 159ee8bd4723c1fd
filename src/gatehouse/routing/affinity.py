"""Prefix affinity: requests that share a prefix go to the same deployment, so its prefix (KV)
cache is reused — the same conversation, or a coding agent's large, stable system prompt and
tool list.

The key is a CRC-32 (stable across gateway replicas) of the client's own hint when it sends one
(OpenAI's `prompt_cache_key`; Claude Code's `x-claude-code-session-id` header, or its session in
`metadata.user_id`), else of the start
of what stays fixed while a conversation grows: the system prompt (or instructions, or leading
system messages) and the conversation's first message, at most 1 KiB of text each. Keys map
onto a ring of virtual nodes built at load (consistent hashing: replicas of the gateway agree,
and adding a deployment moves only its share). Bounded load: a new key
takes the first deployment along the ring holding fewer than `floor(1.25 × mean)` keys, so no
deployment gets more than 1.25× the mean; a key once placed stays (an LRU of the most recent
keys per model), and the rest of the ring order is the failover order.
"""
from __future__ import annotations

import bisect
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.routing.table import Deployment

VNODES = 64  # virtual nodes per deployment on the ring
BOUND = 1.25  # no deployment takes more than this multiple of the mean number of keys
MAX_KEYS = 4096  # placements remembered per model (the least recently used go first)
_TEXT = 1024  # characters of each part that go into the key
SESSION_HEADER = "x-claude-code-session-id"


def _text(x: Any, budget: int = _TEXT) -> str:
    """The first `budget` characters of text in a message, a content list or a string."""
    if isinstance(x, str):
        return x[:budget]
    if isinstance(x, dict):
        return _text(x.get("content", x.get("text", "")), budget)
    if isinstance(x, list):
        out = ""
        for part in x:
            out += _text(part, budget - len(out))
            if len(out) >= budget:
                break
        return out
    return ""


def affinity_key(body: dict[str, Any] | None, session: str | None = None) -> int | None:
    """The key of what stays fixed while a conversation grows: its system prompt (or
    instructions, or leading system messages) and its first other message; None: nothing to key on.
    `session`: the client's session header (Claude Code's), a hint like `prompt_cache_key`."""
    if not body:
        return zlib.crc32(session.encode("utf-8", "surrogatepass")) if session else None
    hint = body.get("prompt_cache_key")  # OpenAI's own: the client names what shares a prefix
    if not isinstance(hint, str) and session:
        hint = session
    if not isinstance(hint, str):
        meta = body.get("metadata")  # Claude Code: user_id "user_<hash>_account_<id>_session_<uuid>"
        hint = meta.get("user_id") if isinstance(meta, dict) else None
        if not (isinstance(hint, str) and "_session_" in hint):
            hint = None
    if hint:
        return zlib.crc32(hint.encode("utf-8", "surrogatepass"))
    messages = body.get("messages")
    if messages is None:
        messages = body.get("input")
    text = _text(body.get("system")) + "\x00" + _text(body.get("instructions")) + "\x00"
    if isinstance(messages, list):
        for m in messages[:8]:
            text += "\x00" + _text(m)
            if not (isinstance(m, dict) and m.get("role") in ("system", "developer")):
                break  # the first message of the conversation itself: enough
    else:
        text += _text(messages)
    if len(text) <= 3:
        return None
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


def request_key(ex: Exchange) -> int | None:
    """The affinity key of a request: its body's, or its session header's (see affinity_key)."""
    call, headers = ex.call, ex.request_headers
    return affinity_key(call.body if call is not None else None,
                        headers.get(SESSION_HEADER) if headers is not None else None)


class PrefixAffinity:
    __slots__ = ("counts", "hashes", "next", "orders", "placed")

    def __init__(self, deployments: tuple[Deployment, ...]) -> None:
        ring = sorted((zlib.crc32(f"{d.provider_name}/{d.upstream_model}#{v}".encode()), i)
                      for i, d in enumerate(deployments) for v in range(VNODES))
        self.hashes = [h for h, _ in ring]
        n = len(deployments)
        orders = []
        for pos in range(len(ring)):  # from each ring position: every deployment once, in ring order
            seen: list[int] = []
            k = pos
            while len(seen) < n:
                idx = ring[k % len(ring)][1]
                if idx not in seen:
                    seen.append(idx)
                k += 1
            orders.append(tuple(seen))
        self.orders = orders or [()]
        self.counts = [0] * n
        self.placed: OrderedDict[int, int] = OrderedDict()
        self.next = 0  # requests without a key: round robin

    def order(self, deployments: tuple[Deployment, ...], ex: Exchange) -> Iterator[Deployment]:
        key = request_key(ex)
        if key is None:
            i = self.next = (self.next + 1) % len(deployments)
            yield from deployments[i:]
            yield from deployments[:i]
            return
        pos = bisect.bisect(self.hashes, key) % len(self.hashes)
        ring_order = self.orders[pos]
        placed = self.placed
        idx = placed.get(key)
        if idx is None:
            idx = self._place(key, ring_order)
        else:
            placed.move_to_end(key)
        yield deployments[idx]
        for i in ring_order:
            if i != idx:
                yield deployments[i]

    def _place(self, key: int, ring_order: tuple[int, ...]) -> int:
        counts = self.counts
        cap = max(1, int(BOUND * (len(self.placed) + 1) / len(counts)))
        idx = next((i for i in ring_order if counts[i] < cap), None)
        if idx is None:
            idx = min(ring_order, key=counts.__getitem__)
        self.placed[key] = idx
        counts[idx] += 1
        if len(self.placed) > MAX_KEYS:
            _, old = self.placed.popitem(last=False)
            counts[old] -= 1
        return idx
