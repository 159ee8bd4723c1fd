"""Anthropic Messages ingress: POST /v1/messages and POST /v1/messages/count_tokens.

Claude Code and the anthropic SDKs talk to these. A model whose deployments all speak
Anthropic gets the client's body forwarded with only the model swapped; any other model gets
the canonical translation, rendered back as Anthropic JSON or Anthropic's SSE event sequence.
"""
from __future__ import annotations

from typing import Any

from gatehouse.api.flow import Dispatch
from gatehouse.api.http import Request, header_list, send_json
from gatehouse.errors import GatehouseError, InvalidRequest, UpstreamError
from gatehouse.metering.tokens import estimate_request
from gatehouse.policy.guardrails.step import SUBJECT, GuardrailStep
from gatehouse.policy.pipeline import Exchange
from gatehouse.providers.base import CallContext, TokenCounter
from gatehouse.runtime import ModelEntry, Runtime
from gatehouse.types import ChatRequest, ChatResponse, json_encode
from gatehouse.wire import anthropic as wire
from gatehouse.wire.anthropic_response import render_response
from gatehouse.wire.anthropic_stream import MessageStreamEncoder, with_keepalive
from gatehouse.wire.common import decode_json_object
from gatehouse.wire.screen import screen_body

DIALECT = "anthropic"
MESSAGES_PATH = "/v1/messages"
# Client headers an Anthropic upstream may receive (each provider filters betas further).
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
TOKEN_COUNT_HEADER = "x-gatehouse-token-count"
# Silence longer than this in a translated stream gets a `ping` (Anthropic's own keepalive).
KEEPALIVE_SECONDS = 15.0


class AnthropicRenderer:
    dialect = DIALECT

    def response(self, resp: ChatResponse, public_model: str) -> bytes:
        return json_encode(render_response(resp, public_model))

    def stream_encoder(self, public_model: str) -> MessageStreamEncoder:
        return MessageStreamEncoder(public_model)


RENDERER = AnthropicRenderer()


class _Parsed:
    """One Anthropic request, parsed once; the canonical form is built only if needed."""

    __slots__ = ("obj", "areq", "raw_len", "_extra")

    def __init__(self, obj: dict[str, Any], areq: wire.ARequest, raw_len: int):
        self.obj = obj
        self.areq = areq
        self.raw_len = raw_len
        self._extra = wire.extra_fields(obj)

    def canonical(self) -> ChatRequest:
        return wire.to_canonical(self.areq, self._extra)


async def _begin(rt: Runtime, req: Request, ex: Exchange, counting: bool) -> tuple[_Parsed, ModelEntry]:
    principal = await rt.auth.authenticate(req.headers)
    ex.principal = principal
    raw = await req.json_body(rt.cfg.server.max_body_bytes)
    obj = decode_json_object(raw)
    screen_body(obj, wire.BODY)
    parsed = _Parsed(obj, wire.parse_request(obj, counting=counting), len(raw))
    return parsed, rt.resolve(parsed.areq.model, principal)


def _forward_headers(req: Request) -> dict[str, str]:
    return {h: req.headers[h] for h in FORWARDED_HEADERS if h in req.headers}


async def messages(rt: Runtime, req: Request, ex: Exchange) -> None:
    parsed, entry = await _begin(rt, req, ex, counting=False)
    dispatch = Dispatch(rt, req, ex, entry, RENDERER, _forward_headers(req))
    canonical: ChatRequest | None = None
    try:
        canonical = parsed.canonical()
    except InvalidRequest:
        if dispatch.needs_translation():  # e.g. a PDF for a model that only reads text
            raise
    # Without a canonical form (only Anthropic upstreams, using blocks only they know) the
    # admission estimate falls back to the body size; the upstream's usage settles it.
    estimate = estimate_request(canonical) if canonical is not None else parsed.raw_len // 4
    ex.model = entry.name
    ex.prompt_estimate = estimate
    ex.max_tokens = parsed.areq.max_tokens
    if canonical is not None:  # without one, a guardrail policy refuses the request (fail closed)
        ex.notes[SUBJECT] = canonical
    await rt.pipeline.admit(ex)
    if ex.max_tokens != parsed.areq.max_tokens:  # the group's cap, on both paths
        parsed.obj["max_tokens"] = ex.max_tokens
        if canonical is not None:
            canonical.max_tokens = ex.max_tokens
    fast = (MESSAGES_PATH, parsed.obj)
    if parsed.areq.stream:
        await dispatch.stream(
            lambda dep, ctx: with_keepalive(dep.provider.chat_stream(canonical, ctx), KEEPALIVE_SECONDS),  # type: ignore[arg-type]
            fast, encoder=MessageStreamEncoder(entry.name, estimate))
    else:
        await dispatch.unary(lambda dep, ctx: dep.provider.chat(canonical, ctx), fast)  # type: ignore[arg-type]


async def count_tokens(rt: Runtime, req: Request, ex: Exchange) -> None:
    """Exact counts from the first deployment that can count; otherwise the gateway's
    estimate (~4 characters a token), flagged in the `x-gatehouse-token-count` header."""
    parsed, entry = await _begin(rt, req, ex, counting=True)
    ex.model = entry.name
    forward_headers = _forward_headers(req)
    canonical: ChatRequest | None = None
    if _guarded(rt, ex, entry):  # a prompt under guardrails reaches no upstream unchecked: estimate it here
        return await _send_count(req, ex, estimate_request(parsed.canonical()), "estimated")
    for dep in entry.deployments:
        provider = dep.provider
        if not isinstance(provider, TokenCounter):
            continue
        ex.deployment, ex.provider = dep.upstream_model, dep.provider_name
        ctx = CallContext(ex.request_id, entry.name, dep.upstream_model, forward_headers)
        try:
            if provider.dialect == DIALECT:
                n = await provider.count_tokens(ctx, body=dict(parsed.obj))
            else:
                canonical = canonical or parsed.canonical()
                n = await provider.count_tokens(ctx, request=canonical)
        except GatehouseError as err:
            if isinstance(err, UpstreamError) and err.status >= 500:
                continue  # an unreachable counter is not worth failing for: estimate instead
            raise
        return await _send_count(req, ex, n, "exact")
    canonical = canonical or parsed.canonical()
    await _send_count(req, ex, estimate_request(canonical), "estimated")


def _guarded(rt: Runtime, ex: Exchange, entry: ModelEntry) -> bool:
    step = next((s for s in rt.pipeline.steps if isinstance(s, GuardrailStep)), None)
    p = ex.principal
    return step is not None and step.plan(p.group if p else None, entry.name) is not None


async def _send_count(req: Request, ex: Exchange, n: int, how: str) -> None:
    ex.status = 200
    await send_json(req.send, 200, {"input_tokens": n}, header_list(ex.request_id, {TOKEN_COUNT_HEADER: how}))
