"""OpenAI-compatible ingress: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models."""
from __future__ import annotations

from typing import Any

from gatehouse.api.flow import Dispatch
from gatehouse.api.http import Request, header_list, send_bytes, send_json
from gatehouse.errors import InvalidRequest, NotFound
from gatehouse.metering.tokens import estimate_request, estimate_text
from gatehouse.policy.principal import Principal
from gatehouse.policy.guardrails.step import SUBJECT
from gatehouse.policy.pipeline import Exchange
from gatehouse.providers.base import Completer, Embedder
from gatehouse.runtime import ModelEntry, Runtime
from gatehouse.types import ChatResponse, json_encode
from gatehouse.wire import openai as wire
from gatehouse.wire import openai_response as wire_response
from gatehouse.wire.common import convert, decode_json_object
from gatehouse.wire.openai_stream import ChunkEncoder, CompletionChunkEncoder
from gatehouse.wire.screen import BodySpec, screen_body

DIALECT = "openai"


class OpenAIRenderer:
    dialect = DIALECT

    def response(self, resp: ChatResponse, public_model: str) -> bytes:
        return json_encode(wire_response.render_response(resp, public_model))

    def stream_encoder(self, public_model: str) -> ChunkEncoder:
        return ChunkEncoder(public_model, include_usage=False)


RENDERER = OpenAIRenderer()


async def _begin(rt: Runtime, req: Request, ex: Exchange, spec: BodySpec) -> tuple[Principal, bytes, dict[str, Any]]:
    principal = await rt.auth.authenticate(req.headers)
    ex.principal = principal
    raw = await req.json_body(rt.cfg.server.max_body_bytes)
    obj = decode_json_object(raw)
    screen_body(obj, spec)
    return principal, raw, obj


async def _admit(rt: Runtime, ex: Exchange, entry: ModelEntry, prompt_estimate: int,
                 request: Any = None, obj: dict[str, Any] | None = None, max_tokens: int | None = None) -> None:
    """Run the pipeline's admission. A group's max_tokens cap, if it lowered the request's,
    is written back to the canonical `request` and, for the fast path, to the body `obj`."""
    ex.model = entry.name
    ex.prompt_estimate = prompt_estimate
    asked = request.max_tokens if request is not None else max_tokens
    ex.max_tokens = asked
    if request is not None:
        ex.notes[SUBJECT] = request  # what the input guardrails read (and redact)
    await rt.pipeline.admit(ex)
    if request is not None and ex.max_tokens != asked:
        request.max_tokens = ex.max_tokens
        if obj is not None:
            _cap_body(obj, ex.max_tokens)


def _cap_body(obj: dict[str, Any], max_tokens: int | None) -> None:
    """Send the capped max_tokens upstream on the fast path too (in every field the client used)."""
    present = [f for f in ("max_tokens", "max_completion_tokens") if f in obj]
    for f in present or ["max_tokens"]:
        obj[f] = max_tokens


async def chat_completions(rt: Runtime, req: Request, ex: Exchange) -> None:
    principal, raw, obj = await _begin(rt, req, ex, wire.CHAT_BODY)
    oreq = wire.parse_chat(obj)
    if oreq.n not in (None, 1):
        raise InvalidRequest("Only n=1 is supported.", param="n")
    entry = rt.resolve(oreq.model, principal)
    canonical = wire.to_canonical(oreq, {k: v for k, v in obj.items() if k not in wire.CHAT_FIELDS})
    await _admit(rt, ex, entry, estimate_request(canonical), canonical, obj)
    dispatch = Dispatch(rt, req, ex, entry, RENDERER)
    fast = ("/chat/completions", obj)
    if oreq.stream:
        wants_usage = wire.client_wants_usage(oreq)
        await dispatch.stream(
            lambda dep, ctx: dep.provider.chat_stream(canonical, ctx), fast, wants_usage,
            ChunkEncoder(entry.name, include_usage=wants_usage),
        )
    else:
        await dispatch.unary(lambda dep, ctx: dep.provider.chat(canonical, ctx), fast)


async def completions(rt: Runtime, req: Request, ex: Exchange) -> None:
    principal, raw, obj = await _begin(rt, req, ex, wire.COMPLETION_BODY)
    oreq = convert(obj, wire.OACompletionRequest)
    entry = rt.resolve(oreq.model, principal)
    canonical = wire.completion_to_canonical(oreq)
    for dep in entry.deployments:
        if not isinstance(dep.provider, Completer):
            raise InvalidRequest(f"The model '{entry.name}' does not support text completions.", param="model")
    await _admit(rt, ex, entry, estimate_text(canonical.prompt) + estimate_text(canonical.suffix or ""),
                 canonical, obj)
    dispatch = Dispatch(rt, req, ex, entry, RENDERER)
    fast = ("/completions", obj)
    if oreq.stream:
        wants_usage = wire.client_wants_usage(oreq)
        await dispatch.stream(
            lambda dep, ctx: dep.provider.complete_stream(canonical, ctx), fast, wants_usage,  # type: ignore[attr-defined]
            CompletionChunkEncoder(entry.name, wants_usage),
        )
    else:
        await dispatch.unary(
            lambda dep, ctx: dep.provider.complete(canonical, ctx), fast,  # type: ignore[attr-defined]
            render=lambda resp: json_encode(wire_response.render_completion(resp, entry.name)),
        )


async def embeddings(rt: Runtime, req: Request, ex: Exchange) -> None:
    principal, raw, obj = await _begin(rt, req, ex, wire.EMBEDDING_BODY)
    oreq = convert(obj, wire.OAEmbeddingRequest)
    entry = rt.resolve(oreq.model, principal)
    canonical = wire.embedding_to_canonical(oreq)
    for dep in entry.deployments:
        if not isinstance(dep.provider, Embedder):
            raise InvalidRequest(f"The model '{entry.name}' does not support embeddings.", param="model")
    ex.notes[SUBJECT] = canonical
    await _admit(rt, ex, entry, sum(estimate_text(t) for t in canonical.input), max_tokens=0)  # no output
    await Dispatch(rt, req, ex, entry, RENDERER).unary(
        lambda dep, ctx: dep.provider.embed(canonical, ctx),  # type: ignore[attr-defined]
        ("/embeddings", obj),
        render=lambda resp: json_encode(
            wire_response.render_embeddings(resp.vectors, entry.name, resp.usage, canonical.encoding_format)),
    )


def _model_card(entry: ModelEntry) -> dict[str, Any]:
    card: dict[str, Any] = {"id": entry.name, "object": "model", "created": entry.created, "owned_by": "gatehouse"}
    if entry.context_window is not None:
        card["context_window"] = entry.context_window
    return card


async def list_models(rt: Runtime, req: Request, ex: Exchange) -> None:
    principal = await rt.auth.authenticate(req.headers)
    ex.principal = principal
    data = [_model_card(m) for m in rt.visible_models(principal)]
    await send_json(req.send, 200, {"object": "list", "data": data}, header_list(ex.request_id))


async def get_model(rt: Runtime, req: Request, ex: Exchange) -> None:
    principal = await rt.auth.authenticate(req.headers)
    ex.principal = principal
    name = req.path_params["model"]
    entry = rt.models.get(name)
    if entry is None or (principal.allowed is not None and name not in principal.allowed):
        raise NotFound(f"The model '{name}' does not exist.", param="model")
    await send_bytes(req.send, 200, json_encode(_model_card(entry)), header_list(ex.request_id))
