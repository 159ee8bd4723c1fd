"""Provider `openai`: any OpenAI-compatible server (vLLM, Ollama /v1, llama.cpp, TGI, OpenAI)."""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec

from gatehouse.config import OpenAIConfig
from gatehouse.providers.base import CallContext, Forwarded, Provider
from gatehouse.types import (
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    StreamEvent,
    Usage,
    json_encode,
)
from gatehouse.upstream.auth import BEARER
from gatehouse.upstream.client import HttpPool, iter_body, malformed, read_body, timeout
from gatehouse.upstream.transport import splice_source
from gatehouse.wire import errors_openai, openai as wire, openai_response as wire_response, responses_passthrough
from gatehouse.wire.openai_stream import PassthroughRelay, decode_stream


class _EmbeddingItem(msgspec.Struct):
    embedding: list[float]
    index: int = 0


class _EmbeddingResponse(msgspec.Struct):
    data: list[_EmbeddingItem]
    usage: wire_response.OAUsage | None = None


class _ModelItem(msgspec.Struct):
    id: str


class _ModelList(msgspec.Struct):
    data: list[_ModelItem] = []


_embedding_decoder = msgspec.json.Decoder(_EmbeddingResponse)
_models_decoder = msgspec.json.Decoder(_ModelList)


class OpenAIProvider(Provider):
    type_name = "openai"
    cfg: OpenAIConfig
    dialect = "openai"
    auth_scheme = BEARER
    parse_error = staticmethod(errors_openai.error_from_response)

    def __init__(self, name: str, cfg: OpenAIConfig, http: HttpPool):
        super().__init__(name, cfg, http)
        self.base_url = (cfg.base_url or "https://api.openai.com/v1").rstrip("/")

    # ---- transport (Provider._post) -------------------------------------------------------

    async def _json(self, path: str, payload: dict[str, Any], call: CallContext) -> bytes:
        resp = await self._post(path, json_encode(payload), call)
        return await read_body(resp, call.public_model)


    # ---- canonical chat ----------------------------------------------------------------------

    async def chat(self, req: ChatRequest, call: CallContext) -> ChatResponse:
        raw = await self._json("/chat/completions", wire.from_canonical(req, call.upstream_model), call)
        return self._decode_response(raw, call)

    def _decode_response(self, raw: bytes, call: CallContext) -> ChatResponse:
        try:
            resp = wire_response.response_decoder.decode(raw)
        except msgspec.DecodeError:
            raise malformed(call.public_model) from None
        return wire_response.response_to_canonical(resp, call.public_model)

    async def chat_stream(self, req: ChatRequest, call: CallContext) -> AsyncIterator[StreamEvent]:
        body = wire.from_canonical(req, call.upstream_model)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        resp = await self._post("/chat/completions", json_encode(body), call)
        async for ev in decode_stream(iter_body(resp, call.public_model), call.public_model):
            yield ev

    # ---- completions (fill-in-the-middle) -----------------------------------------------------

    def _completion_body(self, req: CompletionRequest, call: CallContext) -> dict[str, Any]:
        body: dict[str, Any] = {"model": call.upstream_model, "prompt": req.prompt}
        for name in ("suffix", "max_tokens", "temperature", "top_p"):
            v = getattr(req, name)
            if v is not None:
                body[name] = v
        if req.stop:
            body["stop"] = req.stop
        return body

    async def complete(self, req: CompletionRequest, call: CallContext) -> ChatResponse:
        raw = await self._json("/completions", self._completion_body(req, call), call)
        return self._decode_response(raw, call)

    async def complete_stream(self, req: CompletionRequest, call: CallContext) -> AsyncIterator[StreamEvent]:
        body = self._completion_body(req, call)
        body.update(stream=True, stream_options={"include_usage": True})
        resp = await self._post("/completions", json_encode(body), call)
        async for ev in decode_stream(iter_body(resp, call.public_model), call.public_model):
            yield ev

    # ---- embeddings ----------------------------------------------------------------------------

    async def embed(self, req: EmbeddingRequest, call: CallContext) -> EmbeddingResponse:
        body: dict[str, Any] = {"model": call.upstream_model, "input": req.input}
        if req.dimensions:
            body["dimensions"] = req.dimensions
        raw = await self._json("/embeddings", body, call)
        try:
            resp = _embedding_decoder.decode(raw)
        except msgspec.DecodeError:
            raise malformed(call.public_model) from None
        vectors = [d.embedding for d in sorted(resp.data, key=lambda d: d.index)]
        usage = resp.usage.canonical() if resp.usage else Usage(estimated=True)
        return EmbeddingResponse(call.public_model, vectors, usage)

    # ---- same-dialect pass-through -------------------------------------------------------------

    async def forward(self, path: str, body: dict[str, Any], stream: bool, call: CallContext,
                      client_wants_usage: bool) -> Forwarded:
        if path == "/responses":
            return await self._forward_responses(body, stream, call)
        body["model"] = call.upstream_model
        if stream:
            opts = body.get("stream_options")
            body["stream_options"] = {**opts, "include_usage": True} if isinstance(opts, dict) \
                else {"include_usage": True}
        resp = await self._post(path, json_encode(body), call)
        ctype = resp.headers.get("Content-Type", "application/json")
        if not stream or not ctype.startswith("text/event-stream"):
            raw = await read_body(resp, call.public_model)
            head: wire_response.OAUsageOnly | None = None
            texts: list[str] | None = None
            if call.answer_texts:  # a guardrail checks them: the answer's texts in the same pass
                try:
                    both = wire_response.usage_texts_decoder.decode(raw)
                    head, texts = both, both.texts()
                except msgspec.DecodeError:
                    pass  # (then they are read where they are checked, and refused there, as always)
            finish: tuple[str, ...] | None = None
            if head is None:
                tp = call.traceparent
                try:
                    if tp is not None and tp[-1] == "1":  # a sampled attempt: its finish reasons in the same pass
                        traced = wire_response.usage_finish_decoder.decode(raw)
                        head, finish = traced, traced.finish()
                    else:
                        head = wire_response.usage_only_decoder.decode(raw)
                except msgspec.DecodeError:
                    raise malformed(call.public_model) from None
            if head.error is not None:
                raise errors_openai.error_from_response(resp.status, raw, None, call.public_model)
            usage = head.usage.canonical() if head.usage else None
            if call.model_swap is not None:
                raw = call.model_swap.apply(raw)  # (the model field only: the texts are the same)
            return Forwarded(resp.status, ctype, body=raw, usage=usage, texts=texts, finish=finish)
        relay = PassthroughRelay(client_wants_usage, call.public_model, call.model_swap)
        source = splice_source(resp)  # the lean h1 client's
        splice = (source, relay.feed, relay.flush) if source is not None else None
        return Forwarded(resp.status, ctype, chunks=relay.relay(iter_body(resp, call.public_model)),
                         tally=relay, release=resp.release, splice=splice)

    async def _forward_responses(self, body: dict[str, Any], stream: bool, call: CallContext) -> Forwarded:
        """POST /v1/responses to a deployment that speaks it (`responses_api: true`)."""
        body["model"] = call.upstream_model
        resp = await self._post("/responses", json_encode(body), call)
        ctype = resp.headers.get("Content-Type", "application/json")
        if not stream or not ctype.startswith("text/event-stream"):
            raw = await read_body(resp, call.public_model)
            usage = responses_passthrough.body_usage(raw)
            return Forwarded(resp.status, ctype, body=call.model_swap.apply(raw) if call.model_swap else raw,
                             usage=usage)
        relay = responses_passthrough.ResponsesRelay(call.model_swap)
        source = splice_source(resp)
        splice = (source, relay.feed, relay.flush) if source is not None else None
        return Forwarded(resp.status, ctype, chunks=relay.relay(iter_body(resp, call.public_model)),
                         tally=relay, release=resp.release, splice=splice)

    async def list_models(self) -> list[str]:
        headers: dict[str, str] = dict(self.cfg.headers)
        url = self.base_url + "/models"
        self.auth.apply(headers, "GET", url, b"")
        async with self.http.session.get(url, headers=headers, timeout=timeout(1.0, 2.0), ssl=self.ssl) as resp:
            if resp.status != 200:
                return []
            return [m.id for m in _models_decoder.decode(await resp.read()).data]
