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
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import TYPE_CHECKING, Any

from gatehouse.api.http import Request, header_list, send_bytes, send_json
from gatehouse.api.openai import bind_embedding, require_ability
from gatehouse.errors import InvalidRequest, NotFound
from gatehouse.gateway.endpoint import Call, Endpoint
from gatehouse.gateway.exchange import Exchange
from gatehouse.gateway.relay import Reply
from gatehouse.metering.tokens import estimate_request, estimate_text
from gatehouse.providers.base import CallContext
from gatehouse.routing.table import ModelEntry
from gatehouse.types import ChatRequest, CompletionRequest, EmbeddingRequest, StreamEvent, json_encode
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

if TYPE_CHECKING:
    from gatehouse.routing.table import Deployment
    from gatehouse.runtime import Runtime

DIALECT = "ollama"
VERSION = "0.12.6"  # the Ollama API version this surface follows; clients gate features on it


def _object(raw: bytes, spec: BodySpec, model_optional: bool = False) -> dict[str, Any]:
    obj = decode_json_object(raw)
    screen_body(obj, spec)
    _model_name(obj, model_optional)
    return obj


def _model_name(obj: dict[str, Any], optional: bool = False) -> None:
    """optional: a request without a model may use its group's default (gateway/handle.py)."""
    if not obj.get("model") and isinstance(obj.get("name"), str):
        obj["model"] = obj["name"]  # older clients
    if optional and obj.get("model") is None:
        obj["model"] = ""
    elif not isinstance(obj.get("model"), str) or not obj["model"]:
        raise InvalidRequest("model is required", param="model")


class OllamaCall(Call):
    """Shared by the generating routes: the body cap (options.num_predict) and the renderers."""

    def missing_model(self) -> InvalidRequest:
        return InvalidRequest("model is required", param="model")

    __slots__ = ("timing",)
    dialect = DIALECT
    kind = "chat"

    def bind_timing(self, ex: Exchange, entry: ModelEntry) -> None:
        self.public_model = entry.name
        self.timing = Timing(ex.started)

    def cap_body(self, body: dict[str, Any], limit: int) -> None:
        given = body.get("options")
        options: dict[str, Any] = given if isinstance(given, dict) else {}
        body["options"] = {**options, "num_predict": limit}

    def render(self, result: Any) -> bytes:
        render = render_chat if self.kind == "chat" else render_generate
        return json_encode(render(result, self.public_model, self.timing))

    def encoder(self) -> NDJSONEncoder:
        return NDJSONEncoder(self.public_model, self.kind, self.timing)


# ---- POST /api/chat -------------------------------------------------------------------------------


class ChatCall(OllamaCall):
    __slots__ = ("oreq",)

    def __init__(self, oreq: wire.OLChatRequest, obj: dict[str, Any]):
        super().__init__(oreq.model, obj, "/api/chat")
        self.oreq = oreq

    def build_canonical(self) -> ChatRequest:
        assert self.body is not None
        return wire.chat_to_canonical(self.oreq, self.body)

    async def bind(self, rt: Runtime, ex: Exchange, entry: ModelEntry) -> Reply | None:
        await super().bind(rt, ex, entry)
        assert isinstance(self.subject, ChatRequest)
        self.stream = bool(self.subject.stream)
        self.bind_timing(ex, entry)
        return None


class Chat(Endpoint):
    any_content_type = True

    def parse(self, body: bytes, headers: Mapping[str, str]) -> ChatCall:
        obj = _object(body, wire.CHAT_BODY, model_optional=True)
        return ChatCall(wire.parse_chat(obj), obj)


# ---- POST /api/generate ---------------------------------------------------------------------------


class GenerateCall(OllamaCall):
    """A prompt: a chat turn, or (fill-in-the-middle, raw prompts) a text completion."""

    __slots__ = ("oreq", "completion")
    kind = "generate"

    def __init__(self, oreq: wire.OLGenerateRequest, obj: dict[str, Any]):
        super().__init__(oreq.model, obj, "/api/generate", oreq.stream is not False)
        self.oreq = oreq
        self.completion = oreq.suffix is not None or bool(oreq.raw)

    def build_canonical(self) -> ChatRequest | CompletionRequest:
        if self.completion:
            return wire.generate_to_completion(self.oreq)
        assert self.body is not None
        return wire.generate_to_chat(self.oreq, self.body)

    async def bind(self, rt: Runtime, ex: Exchange, entry: ModelEntry) -> Reply | None:
        oreq = self.oreq
        if not oreq.prompt and not oreq.images and oreq.suffix is None:
            # An empty prompt only asks Ollama to load the model; there is nothing to load here.
            return Reply.ready(json_encode({"model": entry.name, "created_at": now_iso(), "response": "",
                                            "done": True, "done_reason": "load"}))
        self.bind_timing(ex, entry)
        canonical = self.canonical()
        assert isinstance(canonical, (ChatRequest, CompletionRequest))
        if self.completion:
            require_ability(entry, "completer", "raw or fill-in-the-middle completions",
                            "suffix" if oreq.suffix is not None else "raw")
            self.prompt_estimate = estimate_text(oreq.prompt) + estimate_text(oreq.suffix or "")
        else:
            assert isinstance(canonical, ChatRequest)
            self.prompt_estimate = estimate_request(canonical)
        self.subject, self.max_tokens = canonical, canonical.max_tokens
        return None

    def unary(self, dep: Deployment, ctx: CallContext) -> Awaitable[Any]:
        if self.completion:
            assert dep.completer is not None  # (bind checked every deployment)
            return dep.completer.complete(self.canonical(), ctx)  # type: ignore[arg-type]
        return super().unary(dep, ctx)

    def events(self, dep: Deployment, ctx: CallContext) -> AsyncIterator[StreamEvent]:
        if self.completion:
            assert dep.completer is not None
            return dep.completer.complete_stream(self.canonical(), ctx)  # type: ignore[arg-type]
        return super().events(dep, ctx)


class Generate(Endpoint):
    any_content_type = True

    def parse(self, body: bytes, headers: Mapping[str, str]) -> GenerateCall:
        obj = _object(body, wire.GENERATE_BODY)
        return GenerateCall(convert(obj, wire.OLGenerateRequest), obj)


# ---- POST /api/embed, POST /api/embeddings (the older form) ----------------------------------------


class EmbedCall(OllamaCall):
    __slots__ = ("oreq", "legacy")

    def __init__(self, oreq: wire.OLEmbedRequest, obj: dict[str, Any], legacy: bool):
        super().__init__(oreq.model, obj, "/api/embeddings" if legacy else "/api/embed", max_tokens=0)
        self.oreq = oreq
        self.legacy = legacy

    def build_canonical(self) -> EmbeddingRequest:
        return wire.embed_to_canonical(self.oreq)

    async def bind(self, rt: Runtime, ex: Exchange, entry: ModelEntry) -> Reply | None:
        bind_embedding(self, entry)
        self.timing = Timing(ex.started)
        return None

    def unary(self, dep: Deployment, ctx: CallContext) -> Awaitable[Any]:
        assert dep.embedder is not None
        return dep.embedder.embed(self.canonical(), ctx)  # type: ignore[arg-type]

    def render(self, result: Any) -> bytes:
        if self.legacy:
            return json_encode({"embedding": result.vectors[0]})
        return json_encode(render_embed(result.vectors, self.public_model, result.usage, self.timing))


class Embed(Endpoint):
    any_content_type = True

    def __init__(self, legacy: bool):
        self.legacy = legacy

    def parse(self, body: bytes, headers: Mapping[str, str]) -> EmbedCall:
        if self.legacy:
            obj = _object(body, wire.LEGACY_EMBED_BODY)
            old = convert(obj, wire.OLLegacyEmbedRequest)
            return EmbedCall(wire.OLEmbedRequest(old.model, old.prompt), obj, True)
        obj = _object(body, wire.EMBED_BODY)
        return EmbedCall(convert(obj, wire.OLEmbedRequest), obj, False)


CHAT = Chat()
GENERATE = Generate()
EMBED = Embed(legacy=False)
EMBEDDINGS = Embed(legacy=True)


async def _body(rt: Runtime, req: Request, spec: BodySpec) -> dict[str, Any]:
    return _object(await req.json_body(rt.cfg.server.max_body_bytes, any_content_type=True), spec)


# ---- model information ---------------------------------------------------------------------------


def _details() -> dict[str, Any]:
    return {"parent_model": "", "format": "", "family": "", "families": None, "parameter_size": "",
            "quantization_level": ""}


def _modified_at(entry: ModelEntry) -> str:
    when = entry.created or 0
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)) if when else "2024-01-01T00:00:00Z"


async def tags(rt: Runtime, req: Request, ex: Exchange) -> None:
    principal = ex.principal
    assert principal is not None  # (a consumer route: app.py authenticated it)
    models = [{"name": m.name, "model": m.name, "modified_at": _modified_at(m), "size": 0,
               "digest": hashlib.sha256(m.name.encode()).hexdigest(), "details": _details()}
              for m in rt.table.visible(principal)]
    await send_json(req.send, 200, {"models": models}, header_list(ex.request_id))


def _is_embedding_model(rt: Runtime, name: str) -> bool:
    return any(m.name == name and m.embeddings for m in rt.cfg.models)


async def show(rt: Runtime, req: Request, ex: Exchange) -> None:
    assert ex.principal is not None
    obj = await _body(rt, req, wire.SHOW_BODY)
    entry = rt.table.resolve(obj["model"], ex.principal)
    ex.model = entry.name
    dep = entry.deployments[0]
    if dep.passthrough_dialect == DIALECT and dep.forwarder is not None:
        ctx = CallContext(ex.request_id, entry.name, dep.upstream_model, model_swap=dep.model_swap)
        fwd = await dep.forwarder.forward("/api/show", dict(obj), False, ctx, False)
        await send_bytes(req.send, fwd.status, fwd.body or b"", header_list(ex.request_id),
                         fwd.content_type.encode("latin-1"))
        return
    embedding = _is_embedding_model(rt, entry.name)
    capabilities = ["embedding"] if embedding else ["completion", "tools"]
    if not embedding and dep.completer is not None:
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
    principal = ex.principal
    assert principal is not None
    models = [{"name": m.name, "model": m.name, "size": 0, "size_vram": 0, "context_length": 0,
               "digest": hashlib.sha256(m.name.encode()).hexdigest(), "details": _details(),
               "expires_at": "0001-01-01T00:00:00Z"}
              for m in rt.table.visible(principal)]
    await send_json(req.send, 200, {"models": models}, header_list(ex.request_id))


async def pull(rt: Runtime, req: Request, ex: Exchange) -> None:
    """POST /api/pull: the gateway serves configured models and never downloads one. A model the
    caller may already use answers success (so `ollama pull` in a setup script is a no-op); any
    other gets a 404 saying why, never a fake download."""
    assert ex.principal is not None
    obj = await _body(rt, req, wire.PULL_BODY)
    try:
        entry = rt.table.resolve(obj["model"], ex.principal)
    except NotFound:
        raise NotFound(f"The model '{obj['model']}' is not served by this gateway, and the gateway does not pull "
                       "models: ask its operator to add it to the configuration.", code="pull_not_supported",
                       param="model") from None
    ex.model = entry.name
    if obj.get("stream") is False:
        await send_json(req.send, 200, {"status": "success"}, header_list(ex.request_id))
        return
    await send_bytes(req.send, 200, b'{"status":"success"}\n', header_list(ex.request_id), b"application/x-ndjson")
