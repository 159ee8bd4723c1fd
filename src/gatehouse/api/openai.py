"""OpenAI-compatible ingress: /v1/chat/completions, /v1/completions, /v1/embeddings (endpoint specs
for gateway/handle.py), and /v1/models."""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from gatehouse.api.http import Request, header_list, send_bytes, send_json
from gatehouse.errors import InvalidRequest, NotFound
from gatehouse.gateway.endpoint import Call, Endpoint
from gatehouse.gateway.exchange import Exchange
from gatehouse.metering.tokens import estimate_text
from gatehouse.routing.table import ModelEntry
from gatehouse.types import ChatRequest, CompletionRequest, EmbeddingRequest, StreamEvent, json_encode
from gatehouse.upstream.client import malformed
from gatehouse.wire import openai as wire, openai_response as wire_response
from gatehouse.wire.common import convert, decode_json_object
from gatehouse.wire.openai_stream import ChunkEncoder, CompletionChunkEncoder
from gatehouse.wire.screen import BodySpec, screen_body

if TYPE_CHECKING:
    from gatehouse.gateway.relay import Reply
    from gatehouse.providers.base import CallContext
    from gatehouse.routing.table import Deployment
    from gatehouse.runtime import Runtime

DIALECT = "openai"


def _object(raw: bytes, spec: BodySpec) -> dict[str, Any]:
    obj = decode_json_object(raw)
    screen_body(obj, spec)
    if "model" not in obj:  # the caller's group default may apply (gateway/handle.py)
        obj["model"] = ""
    return obj


def cap_body(obj: dict[str, Any], max_tokens: int) -> None:
    """The capped max_tokens goes upstream on the fast path too (in every field the client used)."""
    present = [f for f in ("max_tokens", "max_completion_tokens") if f in obj]
    for f in present or ["max_tokens"]:
        obj[f] = max_tokens


class _AnswerMessage(msgspec.Struct):
    content: str | None = None


class _AnswerChoice(msgspec.Struct):
    message: _AnswerMessage | None = None
    text: str | None = None


class _AnswerTexts(msgspec.Struct):
    """Only the text of an answer (wire/openai_response.OAResponse reads the rest)."""

    choices: list[_AnswerChoice] = []


_answer_texts = msgspec.json.Decoder(_AnswerTexts)


class OpenAICall(Call):
    """Shared by the OpenAI routes: the body cap, the answer's renderer, the forwarded stream's errors."""

    __slots__ = ()
    reads_answers = True

    def cap_body(self, body: dict[str, Any], limit: int) -> None:
        cap_body(body, limit)

    def read_answer(self, body: bytes) -> Any:
        try:
            resp = wire_response.response_decoder.decode(body)
        except msgspec.DecodeError:
            raise malformed(self.public_model) from None
        return wire_response.response_to_canonical(resp, self.public_model)

    def answer_texts(self, body: bytes) -> list[str] | None:
        # What response_to_canonical makes a text part: the first choice's message content
        # (a completion's text when there is no message), when not empty.
        try:
            choices = _answer_texts.decode(body).choices
        except msgspec.DecodeError:
            raise malformed(self.public_model) from None
        if not choices:
            return []
        c = choices[0]
        text = c.message.content if c.message is not None else c.text
        return [text] if text else []

    def render(self, result: Any) -> bytes:
        return json_encode(wire_response.render_response(result, self.public_model))

    def encoder(self) -> ChunkEncoder:
        return ChunkEncoder(self.public_model, include_usage=self.wants_usage)

    def forward_encoder(self) -> ChunkEncoder:
        return ChunkEncoder(self.public_model, include_usage=False)


# ---- POST /v1/chat/completions -------------------------------------------------------------------


class ChatCall(OpenAICall):
    __slots__ = ("oreq",)

    def __init__(self, oreq: wire.OAChatRequest, obj: dict[str, Any]):
        super().__init__(oreq.model, obj, "/chat/completions", bool(oreq.stream))
        self.oreq = oreq
        self.wants_usage = self.stream and wire.client_wants_usage(oreq)

    def build_canonical(self) -> ChatRequest:
        assert self.body is not None
        return wire.to_canonical(self.oreq, {k: v for k, v in self.body.items() if k not in wire.CHAT_FIELDS})


class ChatCompletions(Endpoint):
    def parse(self, body: bytes, headers: Mapping[str, str]) -> ChatCall:
        obj = _object(body, wire.CHAT_BODY)
        oreq = wire.parse_chat(obj)
        if oreq.n not in (None, 1):
            raise InvalidRequest("Only n=1 is supported.", param="n")
        return ChatCall(oreq, obj)


# ---- POST /v1/completions ------------------------------------------------------------------------


def require_ability(entry: ModelEntry, ability: str, what: str, param: str = "model") -> None:
    """Every deployment of the model must be able to serve the route (no failover to one that
    cannot). `ability`: a Deployment slot (completer, embedder), decided at load."""
    for dep in entry.deployments:
        if getattr(dep, ability) is None:
            raise InvalidRequest(f"The model '{entry.name}' does not support {what}.", param=param)


def bind_embedding(call: Call, entry: ModelEntry) -> EmbeddingRequest:
    """An embeddings route's bind (OpenAI's and Ollama's): the deployments can embed, the input is
    what input guardrails read and the estimate; there is no output."""
    call.public_model = entry.name
    canonical = call.canonical()
    assert isinstance(canonical, EmbeddingRequest)
    require_ability(entry, "embedder", "embeddings")
    call.subject = canonical
    call.prompt_estimate = sum(estimate_text(t) for t in canonical.input)
    return canonical


class CompletionCall(OpenAICall):
    __slots__ = ("oreq",)

    def __init__(self, oreq: wire.OACompletionRequest, obj: dict[str, Any]):
        super().__init__(oreq.model, obj, "/completions", bool(oreq.stream))
        self.oreq = oreq
        self.wants_usage = self.stream and wire.client_wants_usage(oreq)

    def build_canonical(self) -> CompletionRequest:
        return wire.completion_to_canonical(self.oreq)

    async def bind(self, rt: Runtime, ex: Exchange, entry: ModelEntry) -> Reply | None:
        self.public_model = entry.name
        canonical = self.canonical()
        assert isinstance(canonical, CompletionRequest)
        require_ability(entry, "completer", "text completions")
        self.subject, self.max_tokens = canonical, canonical.max_tokens
        self.prompt_estimate = estimate_text(canonical.prompt) + estimate_text(canonical.suffix or "")
        return None

    def unary(self, dep: Deployment, ctx: CallContext) -> Awaitable[Any]:
        assert dep.completer is not None  # (bind checked every deployment)
        return dep.completer.complete(self.canonical(), ctx)  # type: ignore[arg-type]

    def events(self, dep: Deployment, ctx: CallContext) -> AsyncIterator[StreamEvent]:
        assert dep.completer is not None
        return dep.completer.complete_stream(self.canonical(), ctx)  # type: ignore[arg-type]

    def render(self, result: Any) -> bytes:
        return json_encode(wire_response.render_completion(result, self.public_model))

    def encoder(self) -> ChunkEncoder:
        return CompletionChunkEncoder(self.public_model, self.wants_usage)


class Completions(Endpoint):
    def parse(self, body: bytes, headers: Mapping[str, str]) -> CompletionCall:
        obj = _object(body, wire.COMPLETION_BODY)
        return CompletionCall(convert(obj, wire.OACompletionRequest), obj)


# ---- POST /v1/embeddings -------------------------------------------------------------------------


class EmbeddingCall(OpenAICall):
    __slots__ = ("oreq",)

    def __init__(self, oreq: wire.OAEmbeddingRequest, obj: dict[str, Any]):
        super().__init__(oreq.model, obj, "/embeddings", max_tokens=0)  # no output
        self.oreq = oreq

    def build_canonical(self) -> EmbeddingRequest:
        return wire.embedding_to_canonical(self.oreq)

    async def bind(self, rt: Runtime, ex: Exchange, entry: ModelEntry) -> Reply | None:
        bind_embedding(self, entry)
        return None

    def unary(self, dep: Deployment, ctx: CallContext) -> Awaitable[Any]:
        assert dep.embedder is not None
        return dep.embedder.embed(self.canonical(), ctx)  # type: ignore[arg-type]

    def read_answer(self, body: bytes) -> Any:
        return None  # vectors: no text for the output guardrails

    def answer_texts(self, body: bytes) -> list[str] | None:
        return None

    def render(self, result: Any) -> bytes:
        canonical = self.canonical()
        assert isinstance(canonical, EmbeddingRequest)
        return json_encode(wire_response.render_embeddings(result.vectors, self.public_model, result.usage,
                                                           canonical.encoding_format))


class Embeddings(Endpoint):
    def parse(self, body: bytes, headers: Mapping[str, str]) -> EmbeddingCall:
        obj = _object(body, wire.EMBEDDING_BODY)
        return EmbeddingCall(convert(obj, wire.OAEmbeddingRequest), obj)


CHAT = ChatCompletions()
COMPLETIONS = Completions()
EMBEDDINGS = Embeddings()


# ---- GET /v1/models ------------------------------------------------------------------------------


def _model_card(entry: ModelEntry) -> dict[str, Any]:
    card: dict[str, Any] = {"id": entry.name, "object": "model", "created": entry.created, "owned_by": "gatehouse"}
    if entry.context_window is not None:
        card["context_window"] = entry.context_window
    return card


async def list_models(rt: Runtime, req: Request, ex: Exchange) -> None:
    assert ex.principal is not None  # (a consumer route: app.py authenticated it)
    data = [_model_card(m) for m in rt.table.visible(ex.principal)]
    await send_json(req.send, 200, {"object": "list", "data": data}, header_list(ex.request_id))


async def get_model(rt: Runtime, req: Request, ex: Exchange) -> None:
    principal = ex.principal
    assert principal is not None
    name = req.path_params["model"]
    entry = rt.models.get(name) or rt.table.virtual.get(name)  # (a virtual model: routing/virtual.py)
    if entry is None or (principal.allowed is not None and name not in principal.allowed):
        raise NotFound(f"The model '{name}' does not exist.", param="model")
    await send_bytes(req.send, 200, json_encode(_model_card(entry)), header_list(ex.request_id))
