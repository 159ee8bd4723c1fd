"""Provider `anthropic`: Anthropic's Messages API (or any server that speaks it, such as
vLLM's or llama.cpp's /v1/messages).

OpenAI-dialect clients reach it through the canonical translation (`chat`/`chat_stream`);
Anthropic-dialect clients through `forward`, which sends their body with only the model
swapped and relays the reply while reading usage from it. `anthropic-version` is pinned by
config or taken from the client; `anthropic-beta` flags pass the `beta_allow` list.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from fnmatch import fnmatchcase
from typing import Any

import msgspec

from gatehouse.config import AnthropicConfig
from gatehouse.providers.base import CallContext, Forwarded, Provider
from gatehouse.types import ChatRequest, ChatResponse, StreamEvent, json_encode
from gatehouse.upstream.auth import AuthScheme
from gatehouse.upstream.client import HttpPool, iter_body, malformed, read_body
from gatehouse.wire import anthropic as wire, anthropic_response as response_wire, errors_anthropic
from gatehouse.wire.anthropic_stream import MessageStreamRelay, decode_stream

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
# Fields the count_tokens endpoint accepts (it refuses the rest of a Messages body).
COUNT_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers",
                "context_management", "output_format", "output_config")


class _Count(msgspec.Struct):
    input_tokens: int


# Messages fields count_tokens refuses; clients often send a Messages body to count it.
GENERATION_ONLY_FIELDS = frozenset({"max_tokens", "stream", "temperature", "top_p", "top_k", "stop_sequences",
                                    "metadata", "service_tier"})

_count_decoder = msgspec.json.Decoder(_Count)


class AnthropicProvider(Provider):
    type_name = "anthropic"
    cfg: AnthropicConfig
    dialect = "anthropic"
    auth_scheme = AuthScheme("x-api-key")
    parse_error = staticmethod(errors_anthropic.error_from_response)

    def __init__(self, name: str, cfg: AnthropicConfig, http: HttpPool):
        super().__init__(name, cfg, http)
        base = (cfg.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.base_url = base[:-3] if base.endswith("/v1") else base  # paths carry /v1
        self.beta_allow = cfg.beta_allow

    # ---- headers (sent by Provider._post) -----------------------------------------------------------

    def betas(self, client_value: str | None) -> str | None:
        """The client's beta flags this provider lets through (None in config = all)."""
        if not client_value:
            return None
        flags = [f.strip() for f in client_value.split(",") if f.strip()]
        if self.beta_allow is not None:
            flags = [f for f in flags if any(fnmatchcase(f, pat) for pat in self.beta_allow)]
        return ",".join(flags) or None

    def _headers(self, call: CallContext) -> dict[str, str]:
        headers = dict(self.static_headers)
        headers["anthropic-version"] = (self.cfg.anthropic_version or call.forward_headers.get("anthropic-version")
                                        or DEFAULT_VERSION)
        beta = self.betas(call.forward_headers.get("anthropic-beta"))
        if beta:
            headers["anthropic-beta"] = beta
        return headers

    # ---- canonical chat (OpenAI-dialect clients) ---------------------------------------------------

    async def chat(self, req: ChatRequest, call: CallContext) -> ChatResponse:
        body = wire.from_canonical(req, call.upstream_model)
        body.pop("stream", None)
        raw = await read_body(await self._post("/v1/messages", json_encode(body), call), call.public_model)
        try:
            resp = response_wire.response_decoder.decode(raw)
        except msgspec.DecodeError:
            raise malformed(call.public_model) from None
        return response_wire.response_to_canonical(resp, call.public_model)

    async def chat_stream(self, req: ChatRequest, call: CallContext) -> AsyncIterator[StreamEvent]:
        body = wire.from_canonical(req, call.upstream_model)
        body["stream"] = True
        resp = await self._post("/v1/messages", json_encode(body), call)
        async for ev in decode_stream(iter_body(resp, call.public_model), call.public_model):
            yield ev

    # ---- same-dialect pass-through ---------------------------------------------------------------

    async def forward(self, path: str, body: dict[str, Any], stream: bool, call: CallContext,
                      client_wants_usage: bool) -> Forwarded:
        body["model"] = call.upstream_model
        resp = await self._post(path, json_encode(body), call)
        ctype = resp.headers.get("Content-Type", "application/json")
        if not stream or not ctype.startswith("text/event-stream"):
            raw = await read_body(resp, call.public_model)
            try:
                head = response_wire.usage_only_decoder.decode(raw)
            except msgspec.DecodeError:
                raise malformed(call.public_model) from None
            if head.error is not None:
                raise errors_anthropic.error_from_response(resp.status, raw, None, call.public_model)
            if call.model_swap is not None:
                raw = call.model_swap.apply(raw)
            return Forwarded(resp.status, ctype, body=raw, usage=head.usage.canonical() if head.usage else None)
        relay = MessageStreamRelay(call.public_model, call.model_swap)
        return Forwarded(resp.status, ctype, chunks=relay.relay(iter_body(resp, call.public_model)),
                         tally=relay, release=resp.release)

    # ---- token counting ------------------------------------------------------------------------------

    async def count_tokens(self, call: CallContext, *, request: ChatRequest | None = None,
                           body: dict[str, Any] | None = None) -> int:
        if body is not None:  # the client's own body, minus what only generation takes
            payload = {k: v for k, v in body.items() if k not in GENERATION_ONLY_FIELDS}
            payload["model"] = call.upstream_model
        else:
            assert request is not None
            full = wire.from_canonical(request, call.upstream_model)
            payload = {k: v for k, v in full.items() if k in COUNT_FIELDS}
        resp = await self._post("/v1/messages/count_tokens", json_encode(payload), call)
        raw = await read_body(resp, call.public_model)
        try:
            return _count_decoder.decode(raw).input_tokens
        except msgspec.DecodeError:
            raise malformed(call.public_model) from None
