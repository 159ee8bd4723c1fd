"""OpenAI Responses ingress: POST /v1/responses (Codex CLI, the AI SDK, OpenCode, client.responses).

Every model is reached by translation: the request becomes the canonical chat request, and the
answer or stream is rendered back as Responses objects and events. Keys, access, limits and
metering apply as on /v1/chat/completions (surface `responses`).
"""
from __future__ import annotations

from gatehouse.api.flow import Dispatch, StreamEncoder
from gatehouse.api.http import Request
from gatehouse.metering.tokens import estimate_request
from gatehouse.policy.guardrails.step import SUBJECT
from gatehouse.policy.pipeline import Exchange
from gatehouse.runtime import Runtime
from gatehouse.types import ChatResponse, json_encode
from gatehouse.wire import responses as wire
from gatehouse.wire.common import decode_json_object
from gatehouse.wire.responses_render import ResponsesStreamEncoder, render_response
from gatehouse.wire.screen import screen_body

DIALECT = "openai-responses"  # no deployment speaks it yet: always translated


class ResponsesRenderer:
    dialect = DIALECT
    __slots__ = ("custom",)

    def __init__(self, custom: frozenset[str]):
        self.custom = custom  # function names standing for custom (free-form) tools

    def response(self, resp: ChatResponse, public_model: str) -> bytes:
        return json_encode(render_response(resp, public_model, self.custom))

    def stream_encoder(self, public_model: str) -> StreamEncoder:
        return ResponsesStreamEncoder(public_model, self.custom)


async def create(rt: Runtime, req: Request, ex: Exchange) -> None:
    principal = await rt.auth.authenticate(req.headers)
    ex.principal = principal
    raw = await req.json_body(rt.cfg.server.max_body_bytes)
    obj = decode_json_object(raw)
    screen_body(obj, wire.RESPONSES_BODY)
    parsed = wire.parse_request(obj)
    entry = rt.resolve(parsed.model, principal)
    translated = wire.to_canonical(parsed, rt.cfg.responses.hosted_tools)
    canonical = translated.request
    if translated.dropped_tools:
        ex.response_headers["x-gatehouse-dropped-tools"] = ",".join(sorted(set(translated.dropped_tools)))
    ex.model = entry.name
    ex.prompt_estimate = estimate_request(canonical)
    ex.max_tokens = canonical.max_tokens
    ex.notes[SUBJECT] = canonical
    await rt.pipeline.admit(ex)
    canonical.max_tokens = ex.max_tokens  # the group's cap, if it lowered the request's
    renderer = ResponsesRenderer(translated.custom_tools)
    dispatch = Dispatch(rt, req, ex, entry, renderer)
    if parsed.stream:
        await dispatch.stream(lambda dep, ctx: dep.provider.chat_stream(canonical, ctx),
                              encoder=renderer.stream_encoder(entry.name))
    else:
        await dispatch.unary(lambda dep, ctx: dep.provider.chat(canonical, ctx))
