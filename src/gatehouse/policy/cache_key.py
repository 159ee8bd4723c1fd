"""What a request is cached under, and whether it may be cached at all (policy/cache.py's step).

A chat request (SHARED_SURFACES) is keyed on its canonical request as it goes upstream, so the same
question in two dialects shares an entry; other cached routes (BODY_SURFACES) on the body as sent,
per route and mode. Both keys end with the tenant. `bypass_reason` says why a request must not be
cached (safe by default: temperature 0, no tools, n = 1, no opt-out or no-store header).
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import msgspec

from gatehouse.policy.cache_wire import mode_of
from gatehouse.types import ChatRequest, EmbeddingRequest

if TYPE_CHECKING:
    from gatehouse.gateway.endpoint import Call
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.policy.cache import CachePolicy

SHARED_SURFACES = frozenset({"chat", "messages"})  # one entry per question, whatever the dialect or mode
BODY_SURFACES = frozenset({"completions", "embeddings", "responses"})  # one entry per body, format and mode
OPT_OUT = frozenset({"off", "bypass", "no", "false", "0"})  # x-gatehouse-cache request header values

_encode_request = msgspec.json.Encoder(order="deterministic").encode


def request_digest(req: ChatRequest, model: str, max_tokens: int | None, tenant: str, sensitive: bool) -> str:
    """What determines the answer, hashed: the canonical request as it goes upstream (the resolved
    model, the capped max_tokens; not the stream flag or the client's `user`), and the tenant."""
    canonical = msgspec.structs.replace(req, model=model, stream=False, user=None, max_tokens=max_tokens)
    h = hashlib.blake2b(_encode_request(canonical), digest_size=20)
    h.update(b"\0" + tenant.encode() + (b"\0s" if sensitive else b""))
    return h.hexdigest()


def body_digest(call: Call, subject: Any, model: str, max_tokens: int | None, tenant: str, sensitive: bool) -> str:
    """The key of a completions, embeddings or Responses request: the body the client sent (every field of it
    goes upstream on the pass-through, canonical or not) or, without one, the canonical request, with
    the resolved model, the capped max_tokens, the tenant and surface, and the wire format and mode
    (these entries are answered in the client's format only)."""
    h = hashlib.blake2b(_encode_request(call.body) if call.body is not None else _encode_request(subject),
                        digest_size=20)
    h.update(b"\0%s\0%s\0%s\0%s\0%s%s" % (model.encode(), str(max_tokens).encode(), tenant.encode(),
                                           (call.path or "-").encode(), mode_of(call).encode(),
                                           b"\0s" if sensitive else b""))
    return h.hexdigest()



def bypass_reason(ex: Exchange, subject: Any, policy: CachePolicy, headers: Any) -> str | None:
    """Why this request must not be cached, or None."""
    surface = ex.surface
    call = ex.call
    body = call.body if call is not None else None
    if surface in SHARED_SURFACES:
        if not isinstance(subject, ChatRequest):
            return "route"
    elif surface not in BODY_SURFACES or call is None:
        return "route"
    elif body is None:  # (Responses: the gateway's stored responses; others: a body never forwarded)
        return "stateful" if surface == "responses" else "route"
    if headers is not None:
        opt = headers.get("x-gatehouse-cache")
        if opt is not None and opt.lower() in OPT_OUT:
            return "opt_out"
        cc = headers.get("cache-control")
        if cc is not None and "no-store" in cc.lower():
            return "no_store"
    if isinstance(subject, EmbeddingRequest):
        return None  # deterministic
    # (a Responses body forwarded as is has no canonical request: its own fields say)
    temperature = subject.temperature if subject is not None else body.get("temperature") if body else None
    if not policy.allow_temperature and (not isinstance(temperature, (int, float)) or temperature > 0):
        return "temperature"  # unset: the upstream's default, which samples
    tools = subject.tools if isinstance(subject, ChatRequest) else body.get("tools") if body else None
    if tools and not policy.allow_tools:
        return "tools"
    if isinstance(subject, ChatRequest):
        for extra in subject.extra.values():
            n = extra.get("n")
            if isinstance(n, int) and n > 1:
                return "n"
    if body is not None and surface in BODY_SURFACES:
        for name in ("n", "best_of"):
            n = body.get(name)
            if isinstance(n, int) and n > 1:
                return "n"
    return None
