"""OpenAI Responses ingress: POST /v1/responses (Codex CLI, the AI SDK, OpenCode, client.responses).

Models are reached by translation: the request becomes the canonical chat request, and the
answer or stream is rendered back as Responses objects and events. Deployments that speak
Responses themselves (`responses_api: true`) get the body untouched unless the request needs the
gateway's stored responses. Keys, access, limits and
metering apply as on /v1/chat/completions (surface `responses`). Stored responses
(`store: true`, `previous_response_id`, `item_reference`) are in api/responses_state.py.
"""
from __future__ import annotations

from typing import Any, Callable

from gatehouse.api import responses_state as state
from gatehouse.api.flow import Dispatch, StreamEncoder
from gatehouse.api.http import Request
from gatehouse.metering.tokens import estimate_request
from gatehouse.policy.guardrails.step import SUBJECT
from gatehouse.policy.pipeline import Exchange
from gatehouse.runtime import Runtime
from gatehouse.types import ChatRequest, ChatResponse, json_encode
from gatehouse.wire import responses as wire
from gatehouse.wire.common import decode_json_object
from gatehouse.wire.responses_render import ResponsesStreamEncoder, render_response
from gatehouse.wire.screen import screen_body

DIALECT = "openai-responses"  # forwarded only to `responses_api: true` deployments (runtime.RESPONSES_DIALECT)


class ResponsesRenderer:
    dialect = DIALECT
    __slots__ = ("custom", "extra", "on_final")

    def __init__(self, custom: frozenset[str], extra: dict[str, Any] | None = None,
                 on_final: Callable[[dict[str, Any]], None] | None = None):
        self.custom = custom  # function names standing for custom (free-form) tools
        self.extra = extra  # more fields of the response object
        self.on_final = on_final  # keeps the finished response (store: true)

    def response(self, resp: ChatResponse, public_model: str) -> bytes:
        body = render_response(resp, public_model, self.custom, self.extra)
        if self.on_final is not None:
            self.on_final(body)
        return json_encode(body)

    def translating_encoder(self, public_model: str) -> ResponsesStreamEncoder:
        return ResponsesStreamEncoder(public_model, self.custom, self.extra, self.on_final)

    def stream_encoder(self, public_model: str) -> StreamEncoder:
        """Only for a stream forwarded from a deployment that speaks Responses (flow asks for it
        to end a failed one): the upstream sent response.created, so a failure is one
        `response.failed`. Translated streams use `translating_encoder`."""
        encoder = self.translating_encoder(public_model)
        encoder.started = True
        return encoder


async def create(rt: Runtime, req: Request, ex: Exchange) -> None:
    principal = await rt.auth.authenticate(req.headers)
    ex.principal = principal
    raw = await req.json_body(rt.cfg.server.max_body_bytes)
    obj = decode_json_object(raw)
    screen_body(obj, wire.RESPONSES_BODY)
    parsed = wire.parse_request(obj)
    entry = rt.resolve(parsed.model, principal)
    store = rt.cfg.responses.store_default if parsed.store is None else parsed.store
    extra: dict[str, Any] | None = None
    on_final: Callable[[dict[str, Any]], None] | None = None
    stateful = store or parsed.previous_response_id is not None or bool(wire.references(parsed.input))
    if stateful:  # the gateway's own stored responses: translated, never forwarded
        items = await state.expand_input(rt, principal.consumer, parsed)
        parsed.input = items
        extra = {"store": store, "previous_response_id": parsed.previous_response_id}
        if store:
            responses, consumer = state.store_of(rt), principal.consumer
            on_final = lambda body: responses.save(consumer, body, items)  # noqa: E731
    # Deployments that speak Responses themselves (responses_api: true) get the body untouched.
    forward = None if stateful else ("/responses", obj)
    forward_only = forward is not None and not rt.pipeline_needs_body and \
        all(DIALECT in dep.also_forwards for dep in entry.deployments)
    # Only translation needs the canonical request: a body that is only forwarded may hold what
    # only the upstream understands (input_file, hosted tools and their call items, ...).
    translated = None if forward_only else wire.to_canonical(parsed, rt.cfg.responses.hosted_tools)
    if translated is not None and translated.dropped_tools:
        ex.response_headers["x-gatehouse-dropped-tools"] = ",".join(sorted(set(translated.dropped_tools)))
    ex.model = entry.name
    ex.prompt_estimate = estimate_request(translated.request) if translated else (len(raw) + 3) // 4
    ex.max_tokens = asked = parsed.max_output_tokens
    if translated is not None:
        ex.notes[SUBJECT] = translated.request
    await rt.pipeline.admit(ex)
    if translated is not None:
        translated.request.max_tokens = ex.max_tokens  # the group's cap, if it lowered the request's
    if forward is not None and ex.max_tokens != asked:
        obj["max_output_tokens"] = ex.max_tokens
    renderer = ResponsesRenderer(translated.custom_tools if translated else frozenset(), extra, on_final)
    dispatch = Dispatch(rt, req, ex, entry, renderer)

    def canonical() -> ChatRequest:  # asked for only by deployments that translate
        assert translated is not None
        return translated.request

    if parsed.stream:
        await dispatch.stream(lambda dep, ctx: dep.provider.chat_stream(canonical(), ctx), forward,
                              encoder=renderer.translating_encoder(entry.name))
    else:
        await dispatch.unary(lambda dep, ctx: dep.provider.chat(canonical(), ctx), forward)
