"""Provider `gemini`: the Google Gemini API (generativelanguage.googleapis.com) with an API key.

Chat through generateContent / streamGenerateContent (SSE), embeddings through
batchEmbedContents. `options` are generationConfig defaults (e.g. thinkingConfig).
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import msgspec

from gatehouse.config import GeminiConfig
from gatehouse.metering.tokens import estimate_text
from gatehouse.providers.base import CallContext, Provider
from gatehouse.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    StreamEvent,
    Usage,
    json_encode,
)
from gatehouse.upstream.auth import AuthScheme
from gatehouse.upstream.client import HttpPool, iter_body, malformed, read_body
from gatehouse.wire import errors_gemini, gemini as wire
from gatehouse.wire.gemini_stream import decode_stream

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"


class GeminiProvider(Provider):
    type_name = "gemini"
    cfg: GeminiConfig
    dialect = "gemini"
    auth_scheme = AuthScheme("x-goog-api-key")
    parse_error = staticmethod(errors_gemini.error_from_response)

    def __init__(self, name: str, cfg: GeminiConfig, http: HttpPool):
        super().__init__(name, cfg, http)
        self.base_url = (cfg.base_url or DEFAULT_BASE_URL).rstrip("/")

    @staticmethod
    def _path(model: str, method: str) -> str:
        return f"/{quote(wire.model_path(model), safe='/')}:{method}"

    async def _read(self, path: str, payload: dict[str, Any], call: CallContext) -> bytes:
        resp = await self._post(path, json_encode(payload), call)
        return await read_body(resp, call.public_model)


    async def chat(self, req: ChatRequest, call: CallContext) -> ChatResponse:
        raw = await self._read(self._path(call.upstream_model, "generateContent"),
                               wire.generate_body(req, self.cfg.options), call)
        try:
            resp = wire.response_decoder.decode(raw)
        except msgspec.DecodeError:
            raise malformed(call.public_model) from None
        return wire.response_to_canonical(resp, call.request_id, call.public_model)

    async def chat_stream(self, req: ChatRequest, call: CallContext) -> AsyncIterator[StreamEvent]:
        path = self._path(call.upstream_model, "streamGenerateContent") + "?alt=sse"
        resp = await self._post(path, json_encode(wire.generate_body(req, self.cfg.options)), call)
        async for ev in decode_stream(iter_body(resp, call.public_model), call.request_id, call.public_model):
            yield ev

    async def embed(self, req: EmbeddingRequest, call: CallContext) -> EmbeddingResponse:
        raw = await self._read(self._path(call.upstream_model, "batchEmbedContents"),
                               wire.embed_body(call.upstream_model, req.input, req.dimensions), call)
        try:
            resp = wire.embeddings_decoder.decode(raw)
        except msgspec.DecodeError:
            raise malformed(call.public_model) from None
        # Gemini reports no token counts for embeddings.
        usage = Usage(input_tokens=sum(estimate_text(t) for t in req.input), estimated=True)
        return EmbeddingResponse(call.public_model, [e.values for e in resp.embeddings], usage)
