"""Anthropic Messages ingress: POST /v1/messages and POST /v1/messages/count_tokens (endpoint specs
for gateway/handle.py).

Claude Code and the anthropic SDKs talk to these. A model whose deployments all speak
Anthropic gets the client's body forwarded with only the model swapped; any other model gets
the canonical translation, rendered back as Anthropic JSON or Anthropic's SSE event sequence.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from gatehouse.errors import GatehouseError, InvalidRequest, UpstreamError
from gatehouse.gateway.endpoint import Call, Endpoint
from gatehouse.gateway.relay import Reply
from gatehouse.metering.tokens import estimate_request
from gatehouse.policy.guardrails.step import GuardrailStep
from gatehouse.providers.base import CallContext
from gatehouse.types import ChatRequest, StreamEvent, json_encode
from gatehouse.upstream.client import malformed
from gatehouse.wire import anthropic as wire
from gatehouse.wire.anthropic_response import render_response, response_decoder, response_to_canonical
from gatehouse.wire.anthropic_stream import MessageStreamEncoder, with_keepalive
from gatehouse.wire.common import decode_json_object
from gatehouse.wire.screen import screen_body

if TYPE_CHECKING:
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.routing.table import Deployment, ModelEntry
    from gatehouse.runtime import Runtime

DIALECT = "anthropic"
MESSAGES_PATH = "/v1/messages"
# Client headers an Anthropic upstream may receive (each provider filters betas further).
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
TOKEN_COUNT_HEADER = "x-gatehouse-token-count"
# Silence longer than this in a translated stream gets a `ping` (Anthropic's own keepalive).
KEEPALIVE_SECONDS = 15.0


class MessagesCall(Call):
    """One Anthropic request, parsed once; the canonical form is built only if needed."""

    __slots__ = ("areq", "raw_len", "_extra")
    dialect = DIALECT
    reads_answers = True

    def __init__(self, obj: dict[str, Any], areq: wire.ARequest, raw_len: int, headers: Mapping[str, str]):
        super().__init__(areq.model, obj, MESSAGES_PATH, bool(areq.stream), areq.max_tokens)
        self.areq = areq
        self.raw_len = raw_len
        self._extra = wire.extra_fields(obj)
        self.forward_headers = {h: headers[h] for h in FORWARDED_HEADERS if h in headers}

    def build_canonical(self) -> ChatRequest:
        return wire.to_canonical(self.areq, self._extra)

    async def bind(self, rt: Runtime, ex: Exchange, entry: ModelEntry) -> Reply | None:
        self.public_model = entry.name
        canonical: ChatRequest | None = None
        try:
            canonical = self.build_canonical()
            self._canonical = canonical
        except InvalidRequest:
            if rt.pipeline_needs_body or not all(DIALECT in dep.forwards for dep in entry.deployments):
                raise  # e.g. a PDF for a model that only reads text
        # Without a canonical form (only Anthropic upstreams, using blocks only they know) the
        # admission estimate falls back to the body size; the upstream's usage settles it.
        # Without one, a guardrail policy refuses the request (fail closed).
        self.subject = canonical
        self.prompt_estimate = estimate_request(canonical) if canonical is not None else self.raw_len // 4
        return None

    def events(self, dep: Deployment, ctx: CallContext) -> AsyncIterator[StreamEvent]:
        return with_keepalive(dep.provider.chat_stream(self.canonical(), ctx), KEEPALIVE_SECONDS)  # type: ignore[arg-type]

    def read_answer(self, body: bytes) -> Any:
        try:
            resp = response_decoder.decode(body)
        except msgspec.DecodeError:
            raise malformed(self.public_model) from None
        return response_to_canonical(resp, self.public_model)

    def render(self, result: Any) -> bytes:
        return json_encode(render_response(result, self.public_model))

    def encoder(self) -> MessageStreamEncoder:
        return MessageStreamEncoder(self.public_model, self.prompt_estimate)

    def forward_encoder(self) -> MessageStreamEncoder:
        return MessageStreamEncoder(self.public_model)


class Messages(Endpoint):
    def parse(self, body: bytes, headers: Mapping[str, str]) -> MessagesCall:
        obj = decode_json_object(body)
        screen_body(obj, wire.BODY)
        if "model" not in obj:  # the caller's group default may apply (gateway/handle.py)
            obj["model"] = ""
        return MessagesCall(obj, wire.parse_request(obj), len(body), headers)


class CountTokensCall(MessagesCall):
    """Exact counts from the first deployment that can count; otherwise the gateway's
    estimate (~4 characters a token), flagged in the `x-gatehouse-token-count` header.
    Answered here: nothing is admitted or metered."""

    __slots__ = ()

    async def bind(self, rt: Runtime, ex: Exchange, entry: ModelEntry) -> Reply | None:
        self.public_model = ex.model = entry.name
        if _guarded(rt, ex, entry):  # a prompt under guardrails reaches no upstream unchecked: estimate it here
            return _count(ex, estimate_request(self.build_canonical()), "estimated")
        canonical: ChatRequest | None = None
        for dep in entry.deployments:
            provider = dep.token_counter
            if provider is None:
                continue
            ex.deployment, ex.provider = dep.upstream_model, dep.provider_name
            ctx = CallContext(ex.request_id, entry.name, dep.upstream_model, self.forward_headers)
            try:
                if dep.provider.dialect == DIALECT:
                    assert self.body is not None
                    n = await provider.count_tokens(ctx, body=dict(self.body))
                else:
                    canonical = canonical or self.build_canonical()
                    n = await provider.count_tokens(ctx, request=canonical)
            except GatehouseError as err:
                if isinstance(err, UpstreamError) and err.status >= 500:
                    continue  # an unreachable counter is not worth failing for: estimate instead
                raise
            return _count(ex, n, "exact")
        canonical = canonical or self.build_canonical()
        return _count(ex, estimate_request(canonical), "estimated")


class CountTokens(Endpoint):
    def parse(self, body: bytes, headers: Mapping[str, str]) -> CountTokensCall:
        obj = decode_json_object(body)
        screen_body(obj, wire.BODY)
        return CountTokensCall(obj, wire.parse_request(obj, counting=True), len(body), headers)


def _guarded(rt: Runtime, ex: Exchange, entry: ModelEntry) -> bool:
    step = next((s for s in rt.pipeline.steps if isinstance(s, GuardrailStep)), None)
    p = ex.principal
    if rt.compliance is not None and entry.name in rt.compliance.limits:  # restricted by data class
        return True
    return step is not None and step.plan(p.group if p else None, entry.name) is not None


def _count(ex: Exchange, n: int, how: str) -> Reply:
    ex.status = 200
    ex.response_headers[TOKEN_COUNT_HEADER] = how
    return Reply.ready(json_encode({"input_tokens": n}))


MESSAGES = Messages()
COUNT_TOKENS = CountTokens()
