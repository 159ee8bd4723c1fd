"""Ollama-compatible ingress: /api/chat, /api/generate, /api/embed(dings), /api/tags, /api/show,
/api/version, /api/ps and /api/pull (docs/migration.md). Bodies are read as JSON whatever their
Content-Type says, as Ollama does (its curl examples send curl's default form type).

Tools that only speak Ollama reach every model behind the gateway with a gateway key
(`Authorization: Bearer KEY`). When a model's deployment is itself an `ollama` provider,
the request is forwarded as it is (model name swapped); otherwise it is translated.
`/api/version` answers without a key, like a health check: it reveals nothing.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any

from gatehouse.api.flow import Dispatch
from gatehouse.api.http import Request, header_list, send_bytes, send_json
from gatehouse.errors import InvalidRequest, NotFound
from gatehouse.metering.tokens import estimate_request, estimate_text
from gatehouse.policy.principal import Principal
from gatehouse.policy.guardrails.step import SUBJECT
from gatehouse.policy.pipeline import Exchange
from gatehouse.providers.base import CallContext, Completer, Embedder
from gatehouse.runtime import ModelEntry, Runtime
from gatehouse.types import ChatResponse, json_encode
from gatehouse.wire import ollama as wire
from gatehouse.wire.common import convert, decode_json_object
from gatehouse.wire.ollama_render import (
    NDJSONEncoder,
    Timing,
    now_iso,
    render_chat,
    render_embed,
    render_generate,
)
from gatehouse.wire.screen import BodySpec, screen_body

DIALECT = "ollama"
VERSION = "0.12.6"  # the Ollama API version this surface follows; clients gate features on it


class OllamaRenderer:
    dialect = DIALECT

    def __init__(self, timing: Timing, kind: str = "chat"):
        self.timing = timing
        self.kind = kind

    def response(self, resp: ChatResponse, public_model: str) -> bytes:
        render = render_chat if self.kind == "chat" else render_generate
        return json_encode(render(resp, public_model, self.timing))

    def stream_encoder(self, public_model: str) -> NDJSONEncoder:
        return NDJSONEncoder(public_model, self.kind, self.timing)


async def _begin(rt: Runtime, req: Request, ex: Exchange, spec: BodySpec) -> tuple[Principal, dict[str, Any]]:
    principal = await rt.auth.authenticate(req.headers)
    ex.principal = principal
    raw = await req.json_body(rt.cfg.server.max_body_bytes, any_content_type=True)
    obj = decode_json_object(raw)
    screen_body(obj, spec)
    return principal, obj


async def _admit(rt: Runtime, ex: Exchange, entry: ModelEntry, prompt_estimate: int, max_tokens: int | None,
                 obj: dict[str, Any] | None = None, capped: Any = None) -> None:
    """Run the pipeline's admission; a group's max_tokens cap is applied to the canonical
    request (`capped`) and, for the pass-through path, to the body's `options.num_predict`."""
    ex.model = entry.name
    ex.prompt_estimate = prompt_estimate
    ex.max_tokens = max_tokens
    if capped is not None:
        ex.notes[SUBJECT] = capped  # what the input guardrails read (and redact)
    await rt.pipeline.admit(ex)
    if ex.max_tokens != max_tokens and ex.max_tokens is not None:
        if capped is not None:
            capped.max_tokens = ex.max_tokens
        if obj is not None:
            given = obj.get("options")
            options: dict[str, Any] = given if isinstance(given, dict) else {}
            obj["options"] = {**options, "num_predict": ex.max_tokens}


def _model_name(obj: dict[str, Any]) -> None:
    if not obj.get("model") and isinstance(obj.get("name"), str):
        obj["model"] = obj["name"]  # older clients
    if not isinstance(obj.get("model"), str) or not obj["model"]:
        raise InvalidRequest("model is required", param="model")


async def chat(rt: Runtime, req: Request, ex: Exchange) -> None:
    principal, obj = await _begin(rt, req, ex, wire.CHAT_BODY)
    _model_name(obj)
    oreq = wire.parse_chat(obj)
    entry = rt.resolve(oreq.model, principal)
    canonical = wire.chat_to_canonical(oreq, obj)
    await _admit(rt, ex, entry, estimate_request(canonical), canonical.max_tokens, obj, canonical)
    renderer = OllamaRenderer(Timing(ex.started))
    dispatch = Dispatch(rt, req, ex, entry, renderer)
    fast = ("/api/chat", obj)
    if canonical.stream:
        await dispatch.stream(lambda dep, ctx: dep.provider.chat_stream(canonical, ctx), fast,
                              encoder=renderer.stream_encoder(entry.name))
    else:
        await dispatch.unary(lambda dep, ctx: dep.provider.chat(canonical, ctx), fast)


async def generate(rt: Runtime, req: Request, ex: Exchange) -> None:
    principal, obj = await _begin(rt, req, ex, wire.GENERATE_BODY)
    _model_name(obj)
    oreq = convert(obj, wire.OLGenerateRequest)
    entry = rt.resolve(oreq.model, principal)
    if not oreq.prompt and not oreq.images and oreq.suffix is None:
        # An empty prompt only asks Ollama to load the model; there is nothing to load here.
        await send_bytes(req.send, 200, json_encode({
            "model": entry.name, "created_at": now_iso(), "response": "", "done": True, "done_reason": "load"}),
            header_list(ex.request_id))
        return
    renderer = OllamaRenderer(Timing(ex.started), "generate")
    dispatch = Dispatch(rt, req, ex, entry, renderer)
    fast = ("/api/generate", obj)
    stream = oreq.stream is not False
    if oreq.suffix is not None or oreq.raw:  # fill-in-the-middle / raw prompts: a text completion
        completion = wire.generate_to_completion(oreq)
        for dep in entry.deployments:
            if not isinstance(dep.provider, Completer):
                raise InvalidRequest(f"The model '{entry.name}' does not support raw or fill-in-the-middle "
                                     "completions.", param="suffix" if oreq.suffix is not None else "raw")
        await _admit(rt, ex, entry, estimate_text(oreq.prompt) + estimate_text(oreq.suffix or ""),
                     completion.max_tokens, obj, completion)
        if stream:
            await dispatch.stream(lambda dep, ctx: dep.provider.complete_stream(completion, ctx), fast,  # type: ignore[attr-defined]
                                  encoder=renderer.stream_encoder(entry.name))
        else:
            await dispatch.unary(lambda dep, ctx: dep.provider.complete(completion, ctx), fast)  # type: ignore[attr-defined]
        return
    canonical = wire.generate_to_chat(oreq, obj)
    await _admit(rt, ex, entry, estimate_request(canonical), canonical.max_tokens, obj, canonical)
    if stream:
        await dispatch.stream(lambda dep, ctx: dep.provider.chat_stream(canonical, ctx), fast,
                              encoder=renderer.stream_encoder(entry.name))
    else:
        await dispatch.unary(lambda dep, ctx: dep.provider.chat(canonical, ctx), fast)


async def _embed(rt: Runtime, req: Request, ex: Exchange, legacy: bool) -> None:
    principal, obj = await _begin(rt, req, ex, wire.LEGACY_EMBED_BODY if legacy else wire.EMBED_BODY)
    _model_name(obj)
    if legacy:
        old = convert(obj, wire.OLLegacyEmbedRequest)
        oreq = wire.OLEmbedRequest(old.model, old.prompt)
    else:
        oreq = convert(obj, wire.OLEmbedRequest)
    entry = rt.resolve(oreq.model, principal)
    canonical = wire.embed_to_canonical(oreq)
    for dep in entry.deployments:
        if not isinstance(dep.provider, Embedder):
            raise InvalidRequest(f"The model '{entry.name}' does not support embeddings.", param="model")
    ex.notes[SUBJECT] = canonical
    await _admit(rt, ex, entry, sum(estimate_text(t) for t in canonical.input), 0)
    timing = Timing(ex.started)

    def render(resp: Any) -> bytes:
        if legacy:
            return json_encode({"embedding": resp.vectors[0]})
        return json_encode(render_embed(resp.vectors, entry.name, resp.usage, timing))

    await Dispatch(rt, req, ex, entry, OllamaRenderer(timing)).unary(
        lambda dep, ctx: dep.provider.embed(canonical, ctx),  # type: ignore[attr-defined]
        ("/api/embeddings" if legacy else "/api/embed", obj), render=render)


async def embed(rt: Runtime, req: Request, ex: Exchange) -> None:
    await _embed(rt, req, ex, legacy=False)


async def embeddings(rt: Runtime, req: Request, ex: Exchange) -> None:
    await _embed(rt, req, ex, legacy=True)


# ---- model information ---------------------------------------------------------------------------


def _details() -> dict[str, Any]:
    return {"parent_model": "", "format": "", "family": "", "families": None, "parameter_size": "",
            "quantization_level": ""}


def _modified_at(entry: ModelEntry) -> str:
    when = entry.created or 0
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)) if when else "2024-01-01T00:00:00Z"


async def tags(rt: Runtime, req: Request, ex: Exchange) -> None:
    principal = await rt.auth.authenticate(req.headers)
    ex.principal = principal
    models = [{"name": m.name, "model": m.name, "modified_at": _modified_at(m), "size": 0,
               "digest": hashlib.sha256(m.name.encode()).hexdigest(), "details": _details()}
              for m in rt.visible_models(principal)]
    await send_json(req.send, 200, {"models": models}, header_list(ex.request_id))


def _is_embedding_model(rt: Runtime, name: str) -> bool:
    return any(m.name == name and m.embeddings for m in rt.cfg.models)


async def show(rt: Runtime, req: Request, ex: Exchange) -> None:
    principal, obj = await _begin(rt, req, ex, wire.SHOW_BODY)
    _model_name(obj)
    entry = rt.resolve(obj["model"], principal)
    ex.model = entry.name
    dep = entry.deployments[0]
    if dep.passthrough_dialect == DIALECT:
        ctx = CallContext(ex.request_id, entry.name, dep.upstream_model, model_swap=dep.model_swap)
        fwd = await dep.provider.forward("/api/show", dict(obj), False, ctx, False)  # type: ignore[attr-defined]
        await send_bytes(req.send, fwd.status, fwd.body or b"", header_list(ex.request_id),
                         fwd.content_type.encode("latin-1"))
        return
    embedding = _is_embedding_model(rt, entry.name)
    capabilities = ["embedding"] if embedding else ["completion", "tools"]
    if not embedding and isinstance(dep.provider, Completer):
        capabilities.append("insert")
    await send_json(req.send, 200, {
        "license": "", "modelfile": "", "parameters": "", "template": "", "details": _details(),
        "model_info": {}, "capabilities": capabilities, "modified_at": _modified_at(entry),
    }, header_list(ex.request_id))


async def version(rt: Runtime, req: Request, ex: Exchange) -> None:
    await send_json(req.send, 200, {"version": VERSION}, header_list(ex.request_id))


async def ps(rt: Runtime, req: Request, ex: Exchange) -> None:
    """GET /api/ps: Ollama's "running models". Behind the gateway every model the caller may use
    is ready to serve (backends load on demand), so those are listed; no sizes are claimed."""
    principal = await rt.auth.authenticate(req.headers)
    ex.principal = principal
    models = [{"name": m.name, "model": m.name, "size": 0, "size_vram": 0, "context_length": 0,
               "digest": hashlib.sha256(m.name.encode()).hexdigest(), "details": _details(),
               "expires_at": "0001-01-01T00:00:00Z"}
              for m in rt.visible_models(principal)]
    await send_json(req.send, 200, {"models": models}, header_list(ex.request_id))


async def pull(rt: Runtime, req: Request, ex: Exchange) -> None:
    """POST /api/pull: the gateway serves configured models and never downloads one. A model the
    caller may already use answers success (so `ollama pull` in a setup script is a no-op); any
    other gets a 404 saying why, never a fake download."""
    principal, obj = await _begin(rt, req, ex, wire.PULL_BODY)
    _model_name(obj)
    try:
        entry = rt.resolve(obj["model"], principal)
    except NotFound:
        raise NotFound(f"The model '{obj['model']}' is not served by this gateway, and the gateway does not pull "
                       "models: ask its operator to add it to the configuration.", code="pull_not_supported",
                       param="model") from None
    ex.model = entry.name
    if obj.get("stream") is False:
        await send_json(req.send, 200, {"status": "success"}, header_list(ex.request_id))
        return
    await send_bytes(req.send, 200, b'{"status":"success"}\n', header_list(ex.request_id), b"application/x-ndjson")
