"""Provider `ollama`: Ollama's native API (/api/chat, /api/generate, /api/embed, NDJSON streams).

Chosen per provider for what only the native API has: `keep_alive` (how long the model
stays loaded) and `options` such as `num_ctx` (the context window, which /v1 cannot set).
Ollama through its OpenAI-compatible /v1 stays the `openai` type. Requests that arrive in
the Ollama dialect are forwarded as they are, with only the model name swapped and the
provider's defaults filled in.
"""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from gatehouse.config import OllamaConfig
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
from gatehouse.wire import errors_ollama, ollama as wire
from gatehouse.wire.ollama_stream import NDJSONRelay, decode_stream

DEFAULT_BASE_URL = "http://127.0.0.1:11434"
# Paths whose bodies take generation defaults (options, keep_alive) on the pass-through.
_GENERATING = frozenset({"/api/chat", "/api/generate", "/api/embed", "/api/embeddings"})


class _Tag(msgspec.Struct):
    name: str


class _Tags(msgspec.Struct):
    models: list[_Tag] = []


class OllamaProvider(Provider):
    type_name = "ollama"
    cfg: OllamaConfig
    dialect = "ollama"
    auth_scheme = BEARER  # for an Ollama behind an authenticating proxy
    parse_error = staticmethod(errors_ollama.error_from_response)  # Ollama errors: {"error": "..."}

    def __init__(self, name: str, cfg: OllamaConfig, http: HttpPool):
        super().__init__(name, cfg, http)
        self.base_url = (cfg.base_url or DEFAULT_BASE_URL).rstrip("/")

    # ---- transport (Provider._post) -------------------------------------------------------

    async def _read(self, path: str, payload: dict[str, Any], call: CallContext) -> bytes:
        resp = await self._post(path, json_encode(payload), call)
        return await read_body(resp, call.public_model)


    def _reply(self, raw: bytes, call: CallContext) -> ChatResponse:
        try:
            resp = wire.response_decoder.decode(raw)
        except msgspec.DecodeError:
            raise malformed(call.public_model) from None
        return wire.response_to_canonical(resp, f"ollama-{uuid.uuid4().hex[:16]}", call.public_model)

    # ---- chat and completions ----------------------------------------------------------------

    def _chat_body(self, req: ChatRequest, call: CallContext, stream: bool) -> dict[str, Any]:
        return wire.chat_body(req, call.upstream_model, self.cfg.options, self.cfg.keep_alive, stream)

    async def chat(self, req: ChatRequest, call: CallContext) -> ChatResponse:
        return self._reply(await self._read("/api/chat", self._chat_body(req, call, False), call), call)

    async def chat_stream(self, req: ChatRequest, call: CallContext) -> AsyncIterator[StreamEvent]:
        resp = await self._post("/api/chat", json_encode(self._chat_body(req, call, True)), call)
        async for ev in decode_stream(iter_body(resp, call.public_model), f"ollama-{uuid.uuid4().hex[:16]}",
                                      call.public_model):
            yield ev

    def _generate_body(self, req: CompletionRequest, call: CallContext, stream: bool) -> dict[str, Any]:
        return wire.generate_body(req, call.upstream_model, self.cfg.options, self.cfg.keep_alive, stream)

    async def complete(self, req: CompletionRequest, call: CallContext) -> ChatResponse:
        return self._reply(await self._read("/api/generate", self._generate_body(req, call, False), call), call)

    async def complete_stream(self, req: CompletionRequest, call: CallContext) -> AsyncIterator[StreamEvent]:
        resp = await self._post("/api/generate", json_encode(self._generate_body(req, call, True)), call)
        async for ev in decode_stream(iter_body(resp, call.public_model), f"ollama-{uuid.uuid4().hex[:16]}",
                                      call.public_model):
            yield ev

    # ---- embeddings ------------------------------------------------------------------------------

    async def embed(self, req: EmbeddingRequest, call: CallContext) -> EmbeddingResponse:
        body: dict[str, Any] = {"model": call.upstream_model, "input": req.input}
        if req.dimensions:
            body["dimensions"] = req.dimensions
        if self.cfg.keep_alive is not None:
            body["keep_alive"] = self.cfg.keep_alive
        if self.cfg.options:
            body["options"] = self.cfg.options
        raw = await self._read("/api/embed", body, call)
        try:
            resp = wire.embed_decoder.decode(raw)
        except msgspec.DecodeError:
            raise malformed(call.public_model) from None
        return EmbeddingResponse(call.public_model, resp.embeddings, Usage(input_tokens=resp.prompt_eval_count))

    # ---- same-dialect pass-through -----------------------------------------------------------------

    async def forward(self, path: str, body: dict[str, Any], stream: bool, call: CallContext,
                      client_wants_usage: bool) -> Forwarded:
        body["model"] = call.upstream_model
        body.pop("name", None)  # old clients name the model here (/api/show)
        if path in _GENERATING:
            if self.cfg.keep_alive is not None:
                body.setdefault("keep_alive", self.cfg.keep_alive)
            if self.cfg.options:
                client = body.get("options")
                body["options"] = {**self.cfg.options, **(client if isinstance(client, dict) else {})}
        resp = await self._post(path, json_encode(body), call)
        ctype = resp.headers.get("Content-Type", "application/json")
        if not stream or "ndjson" not in ctype:
            raw = await read_body(resp, call.public_model)
            usage = None
            if path in _GENERATING:
                try:
                    reply = wire.response_decoder.decode(raw)
                except msgspec.DecodeError:
                    raise malformed(call.public_model) from None
                if reply.error is not None:  # an error body sent with a 2xx status: never relayed
                    raise errors_ollama.error_from_response(resp.status, raw, None, call.public_model)
                usage = reply.usage()
            if call.model_swap is not None:
                raw = call.model_swap.apply(raw)
            return Forwarded(resp.status, ctype, body=raw, usage=usage)
        relay = NDJSONRelay(call.public_model, call.model_swap)
        return Forwarded(resp.status, ctype, chunks=relay.relay(iter_body(resp, call.public_model)),
                         tally=relay, release=resp.release)

    async def list_models(self) -> list[str]:
        headers: dict[str, str] = dict(self.cfg.headers)
        url = self.base_url + "/api/tags"
        self.auth.apply(headers, "GET", url, b"")
        async with self.http.session.get(url, headers=headers, timeout=timeout(1.0, 2.0), ssl=self.ssl) as resp:
            if resp.status != 200:
                return []
            return [m.name for m in msgspec.json.decode(await resp.read(), type=_Tags).models]
