"""OpenAI Responses ingress: POST /v1/responses (Codex CLI, the AI SDK, OpenCode, client.responses).

Models are reached by translation: the request becomes the canonical chat request, and the
answer or stream is rendered back as Responses objects and events. Deployments that speak
Responses themselves (`responses_api: true`) get the body untouched unless the request needs the
gateway's stored responses. Keys, access, limits and
metering apply as on /v1/chat/completions (surface `responses`). Stored responses
(`store: true`, `previous_response_id`, `item_reference`) are in api/responses_state.py.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gatehouse.api import responses_state as state
from gatehouse.gateway.endpoint import Call, Endpoint
from gatehouse.metering.tokens import estimate_request
from gatehouse.types import ChatRequest, json_encode
from gatehouse.wire import responses as wire
from gatehouse.wire.common import decode_json_object
from gatehouse.wire.responses_render import ResponsesStreamEncoder, render_response
from gatehouse.wire.screen import screen_body

if TYPE_CHECKING:
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.gateway.relay import Reply
    from gatehouse.routing.table import ModelEntry
    from gatehouse.runtime import Runtime

DIALECT = "openai-responses"  # forwarded only to `responses_api: true` deployments (runtime.RESPONSES_DIALECT)


class ResponsesCall(Call):
    """One Responses request. Only translation needs the canonical request: a body that is only
    forwarded may hold what only the upstream understands (input_file, hosted tools and their
    call items, ...)."""

    __slots__ = ("parsed", "raw_len", "translated", "custom", "extra", "on_final", "expanded")
    dialect = DIALECT

    def __init__(self, parsed: wire.ResponsesRequest, obj: dict[str, Any], raw_len: int):
        super().__init__(parsed.model, obj, "/responses", bool(parsed.stream), parsed.max_output_tokens)
        self.parsed = parsed
        self.raw_len = raw_len
        self.translated: wire.Translated | None = None
        self.custom: frozenset[str] = frozenset()  # function names standing for custom (free-form) tools
        self.extra: dict[str, Any] | None = None  # more fields of the response object
        self.on_final: Callable[[dict[str, Any]], None] | None = None  # keeps the finished response (store: true)
        # the stored conversation is in `parsed.input` (a request bound again to another model, by a
        # virtual model or compliance routing, must not prepend it twice)
        self.expanded = False

    async def bind(self, rt: Runtime, ex: Exchange, entry: ModelEntry) -> Reply | None:
        self.public_model = entry.name
        parsed = self.parsed
        principal = ex.principal
        assert principal is not None
        store = rt.cfg.responses.store_default if parsed.store is None else parsed.store
        stateful = store or parsed.previous_response_id is not None or bool(wire.references(parsed.input))
        if stateful and not self.expanded:  # the gateway's own stored responses: translated, never forwarded
            self.expanded = True
            items = await state.expand_input(rt, principal.consumer, parsed)
            parsed.input = items
            self.extra = {"store": store, "previous_response_id": parsed.previous_response_id}
            if store:
                responses, consumer = state.store_of(rt), principal.consumer
                self.on_final = lambda body: responses.save(consumer, body, items)
            self.body = self.path = None
        # Deployments that speak Responses themselves (responses_api: true) get the body untouched.
        forward_only = self.body is not None and not rt.pipeline_needs_body and \
            all(DIALECT in dep.also_forwards for dep in entry.deployments)
        if not forward_only:
            translated = self._translate(rt)
            if translated.dropped_tools:
                ex.response_headers["x-gatehouse-dropped-tools"] = ",".join(sorted(set(translated.dropped_tools)))
            self.subject = translated.request
            self.prompt_estimate = estimate_request(translated.request)
        else:
            self.prompt_estimate = (self.raw_len + 3) // 4
        return None

    def _translate(self, rt: Runtime) -> wire.Translated:
        translated = self.translated = wire.to_canonical(self.parsed, rt.cfg.responses.hosted_tools)
        self._canonical = translated.request
        self.custom = translated.custom_tools
        return translated

    def build_canonical(self) -> ChatRequest:  # (bind translated whenever a deployment needs it)
        raise AssertionError("a Responses request forwarded as is has no canonical form")

    def cap_body(self, body: dict[str, Any], limit: int) -> None:
        body["max_output_tokens"] = limit

    def render(self, result: Any) -> bytes:
        body = render_response(result, self.public_model, self.custom, self.extra)
        if self.on_final is not None:
            self.on_final(body)
        return json_encode(body)

    def encoder(self) -> ResponsesStreamEncoder:
        return ResponsesStreamEncoder(self.public_model, self.custom, self.extra, self.on_final)

    def forward_encoder(self) -> ResponsesStreamEncoder:
        """For a stream forwarded from a deployment that speaks Responses: the upstream sent
        response.created, so a failure is one `response.failed`."""
        encoder = self.encoder()
        encoder.started = True
        return encoder


class Create(Endpoint):
    def parse(self, body: bytes, headers: Mapping[str, str]) -> ResponsesCall:
        obj = decode_json_object(body)
        screen_body(obj, wire.RESPONSES_BODY)
        if "model" not in obj:  # the caller's group default may apply (gateway/handle.py)
            obj["model"] = ""
        return ResponsesCall(wire.parse_request(obj), obj, len(body))


CREATE = Create()
