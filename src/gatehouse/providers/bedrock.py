"""Provider `bedrock`: AWS Bedrock Runtime through Converse / ConverseStream, embeddings
through InvokeModel (Titan, Cohere), signed with SigV4 from the standard AWS credential chain.

Model ids may be foundation-model ids, cross-region inference profile ids
(`us.anthropic...`) or ARNs; they are percent-encoded into the path, as the AWS SDKs do.
With `api_key` set, a Bedrock API key (bearer token) is used instead of SigV4.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import msgspec

from gatehouse.config import BedrockConfig
from gatehouse.errors import InvalidRequest
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
from gatehouse.upstream.auth import AuthScheme, aws_region
from gatehouse.upstream.client import HttpPool, iter_body, malformed, read_body
from gatehouse.wire import bedrock as wire, errors_bedrock
from gatehouse.wire.bedrock_stream import decode_stream
from gatehouse.wire.errors_bedrock import INVOKE_STREAM


class BedrockProvider(Provider):
    type_name = "bedrock"
    cfg: BedrockConfig
    dialect = "bedrock"
    # A Bedrock API key (bearer token) when `api_key` is set, else SigV4 from the AWS chain.
    auth_scheme = AuthScheme("Authorization", "Bearer ", aws_service="bedrock")
    parse_error = staticmethod(errors_bedrock.error_from_response)
    upstream_label = "Bedrock"

    def __init__(self, name: str, cfg: BedrockConfig, http: HttpPool):
        super().__init__(name, cfg, http)
        region = aws_region(cfg) or "us-east-1"
        self.base_url = (cfg.endpoint_url or f"https://bedrock-runtime.{region}.amazonaws.com").rstrip("/")

    # ---- transport (Provider._post; the IAM action an error names comes from the URL) ------------

    async def _invoke(self, model_id: str, action: str, payload: dict[str, Any], call: CallContext,
                      accept: str = "application/json") -> Any:
        headers = self._headers(call)
        headers["Accept"] = accept
        return await self._post(f"/model/{quote(model_id, safe='')}/{action}", json_encode(payload), call, headers)

    async def _json(self, model_id: str, action: str, payload: dict[str, Any], call: CallContext) -> tuple[bytes, Any]:
        resp = await self._invoke(model_id, action, payload, call)
        return await read_body(resp, call.public_model), resp.headers


    # ---- chat --------------------------------------------------------------------------------

    def _body(self, req: ChatRequest, call: CallContext, stream: bool) -> dict[str, Any]:
        return wire.converse_body(req, call.upstream_model, self.cfg.options, self.cfg.guardrail, stream)

    async def chat(self, req: ChatRequest, call: CallContext) -> ChatResponse:
        raw, headers = await self._json(call.upstream_model, "converse", self._body(req, call, False), call)
        try:
            resp = wire.response_decoder.decode(raw)
        except msgspec.DecodeError:
            raise malformed(call.public_model) from None
        return wire.response_to_canonical(resp, headers.get("x-amzn-RequestId") or call.request_id,
                                          call.public_model)

    async def chat_stream(self, req: ChatRequest, call: CallContext) -> AsyncIterator[StreamEvent]:
        resp = await self._invoke(call.upstream_model, "converse-stream", self._body(req, call, True), call,
                                  accept="application/vnd.amazon.eventstream")
        response_id = resp.headers.get("x-amzn-RequestId") or call.request_id
        async for ev in decode_stream(iter_body(resp, call.public_model), response_id, call.public_model,
                                      INVOKE_STREAM):
            yield ev

    # ---- embeddings --------------------------------------------------------------------------

    async def embed(self, req: EmbeddingRequest, call: CallContext) -> EmbeddingResponse:
        family = wire.embedding_family(call.upstream_model)
        if family == "titan":  # one text per call: send them concurrently
            results = await asyncio.gather(*(self._titan(t, req.dimensions, call) for t in req.input))
            vectors = [v for v, _ in results]
            usage = Usage(input_tokens=sum(n for _, n in results))
        elif family == "cohere":
            vectors, tokens, estimated = [], 0, False
            for i in range(0, len(req.input), wire.COHERE_BATCH):
                batch = req.input[i:i + wire.COHERE_BATCH]
                raw, headers = await self._json(call.upstream_model, "invoke",
                                                wire.cohere_body(batch, req.dimensions), call)
                vectors.extend(wire.cohere_vectors(self._decode(wire.cohere_decoder, raw, call)))
                counted = _token_header(headers)
                estimated = estimated or counted is None
                tokens += counted if counted is not None else sum(estimate_text(t) for t in batch)
            usage = Usage(input_tokens=tokens, estimated=estimated)
        else:
            raise InvalidRequest(f"The model '{call.public_model}' does not support embeddings "
                                 "(Bedrock embeddings: Titan or Cohere embedding models).", param="model")
        return EmbeddingResponse(call.public_model, vectors, usage)

    async def _titan(self, text: str, dimensions: int | None, call: CallContext) -> tuple[list[float], int]:
        raw, headers = await self._json(call.upstream_model, "invoke", wire.titan_body(text, dimensions), call)
        resp = self._decode(wire.titan_decoder, raw, call)
        return resp.embedding, resp.inputTextTokenCount or _token_header(headers) or estimate_text(text)

    @staticmethod
    def _decode(decoder: msgspec.json.Decoder[Any], raw: bytes, call: CallContext) -> Any:
        try:
            return decoder.decode(raw)
        except msgspec.DecodeError:
            raise malformed(call.public_model) from None


def _token_header(headers: Any) -> int | None:
    """InvokeModel reports the input token count in a response header."""
    value = headers.get("X-Amzn-Bedrock-Input-Token-Count")
    return int(value) if value and value.isdigit() else None
