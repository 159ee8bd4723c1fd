"""What a model route is: an Endpoint parses a body into a Call; the Call says everything the
path needs about the request, in one place, whatever its dialect.

A Call holds the model the client named, the stream flag, max_tokens, the prompt estimate, the
canonical request (built at most once, and only when some deployment needs it or a guardrail reads
it), the pass-through body for deployments that take the client's dialect unchanged, and ONE
`cap_max_tokens` that lowers the cap in the canonical request and the raw body alike (each dialect
names the body field in `cap_body`). It also renders: a canonical answer, a translated stream's
encoder, the error frame of a forwarded stream.

Dialect modules (api/openai.py, api/anthropic.py, api/ollama.py, api/responses.py,
api/migration.py) define Call subclasses and Endpoint instances; gateway/handle.py walks the path.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from gatehouse.errors import InvalidRequest, UpstreamError
from gatehouse.gateway.relay import Reply
from gatehouse.metering.tokens import estimate_request
from gatehouse.types import ChatRequest, CompletionRequest, EmbeddingRequest, StreamEvent, TextPart

if TYPE_CHECKING:
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.providers.base import CallContext
    from gatehouse.routing.table import Deployment, ModelEntry
    from gatehouse.runtime import Runtime

Canonical = ChatRequest | CompletionRequest | EmbeddingRequest


class StreamEncoder(Protocol):
    def encode(self, ev: StreamEvent) -> bytes: ...
    def error(self, message: str, type_: str = "api_error") -> bytes: ...


class Call:
    """One client request in its own dialect (subclassed per route).

    Set by `parse`: model, stream, max_tokens, body and path (None: never forwarded). Set by
    `bind`, once the model is resolved: prompt_estimate, subject (the canonical request the input
    guardrails read; None when it could not be built). Set by handle after admission:
    `forwarding` (no policy needs the body rewritten or the answer as events)."""

    __slots__ = ("model", "stream", "max_tokens", "prompt_estimate", "subject", "body", "path", "forwarding",
                 "wants_usage", "forward_headers", "public_model", "checks_answer", "_canonical")

    # The client dialect a deployment must take unchanged to be sent `body` (Deployment.forwards).
    dialect: ClassVar[str] = "openai"
    # (guardrails) `read_answer` reads a forwarded unary answer of this dialect, so its output
    # checks need no translated path; without it such a request is translated (gateway/handle.py).
    reads_answers: ClassVar[bool] = False

    def __init__(self, model: str, body: dict[str, Any] | None, path: str | None, stream: bool = False,
                 max_tokens: int | None = None):
        self.model = model
        self.stream = stream
        self.max_tokens = max_tokens
        self.body = body
        self.path = path
        self.prompt_estimate = 0
        self.subject: Canonical | None = None
        self.forwarding = False
        self.wants_usage = False  # (OpenAI streams) the client asked for the usage chunk itself
        self.forward_headers: dict[str, str] = {}  # client headers a provider may pass on
        self.public_model = ""  # the resolved model's name, what replies carry
        self.checks_answer = False  # (guardrails) output checks read the answer (CallContext.answer_texts)
        self._canonical: Canonical | None = None

    # ---- the request ------------------------------------------------------------------------

    async def bind(self, rt: Runtime, ex: Exchange, entry: ModelEntry) -> Reply | None:
        """The model is resolved: build what admission needs (canonical request, estimate) and
        check the model can serve this route. A Reply returned here is the answer (nothing is
        admitted or sent upstream). This default is a chat route's; other routes override it."""
        self.public_model = entry.name
        canonical = self.canonical()
        assert isinstance(canonical, ChatRequest)
        self.subject, self.max_tokens = canonical, canonical.max_tokens
        self.prompt_estimate = estimate_request(canonical)
        return None

    def canonical(self) -> Canonical:
        """The canonical request, built once."""
        c = self._canonical
        if c is None:
            c = self._canonical = self.build_canonical()
        return c

    def build_canonical(self) -> Canonical:
        raise NotImplementedError

    def passthrough(self) -> tuple[str, dict[str, Any]]:
        """(upstream path, body) for a deployment that takes this dialect unchanged."""
        assert self.path is not None and self.body is not None
        return self.path, self.body

    def can_forward(self, dep: Deployment) -> bool:
        return self.forwarding and self.dialect in dep.forwards

    def cap_max_tokens(self, limit: int) -> None:
        """The group's max_tokens cap lowered the request's: send the lower one upstream, on the
        translated path (canonical) and the pass-through path (body) alike."""
        self.max_tokens = limit
        if self._canonical is not None and not isinstance(self._canonical, EmbeddingRequest):
            self._canonical.max_tokens = limit
        if self.body is not None:
            self.cap_body(self.body, limit)

    def cap_body(self, body: dict[str, Any], limit: int) -> None:
        body["max_tokens"] = limit

    def missing_model(self) -> InvalidRequest:
        """The dialect's error for a request without a model (none named, no group default)."""
        return InvalidRequest("Invalid value for 'model': required field is missing", code="invalid_value",
                              param="model")

    # ---- calling a deployment (translated) ----------------------------------------------------

    def unary(self, dep: Deployment, ctx: CallContext) -> Awaitable[Any]:
        return dep.provider.chat(self.canonical(), ctx)  # type: ignore[arg-type]

    def events(self, dep: Deployment, ctx: CallContext) -> AsyncIterator[StreamEvent]:
        return dep.provider.chat_stream(self.canonical(), ctx)  # type: ignore[arg-type]

    def read_answer(self, body: bytes) -> Any:
        """A forwarded unary answer (the client's dialect) as the canonical answer a translated
        call would have returned, for the output guardrails; None for one without text."""
        raise NotImplementedError

    def answer_texts(self, body: bytes) -> list[str] | None:
        """The texts of `read_answer(body)`'s text parts, in order (a dialect may read just them)."""
        result = self.read_answer(body)
        return None if result is None else [p.text for p in result.content if isinstance(p, TextPart)]

    # ---- rendering -------------------------------------------------------------------------------

    def render(self, result: Any) -> bytes:
        """A canonical answer in the client's format."""
        raise NotImplementedError

    def encoder(self) -> StreamEncoder:
        """The encoder of a translated stream."""
        raise NotImplementedError

    def forward_encoder(self) -> StreamEncoder:
        """The encoder whose error frame ends a forwarded stream that failed or was cut."""
        return self.encoder()


class Endpoint:
    """One model route: how its body is read and parsed. `invoke` is shared by every route."""

    any_content_type: ClassVar[bool] = False  # read the body as JSON whatever its Content-Type

    def parse(self, body: bytes, headers: Mapping[str, str]) -> Call:
        raise NotImplementedError

    async def invoke(self, dep: Deployment, call: Call, ctx: CallContext) -> Reply:
        """Call one deployment: forward the client's body when it takes this dialect, else
        translate. Returns at the answer's first byte (or first stream event), so the caller can
        still fail over."""
        if call.can_forward(dep):
            path, body = call.passthrough()
            if call.checks_answer and not call.stream:
                ctx.answer_texts = True
            assert dep.forwarder is not None  # (a deployment that forwards a dialect has the ability)
            fwd = await dep.forwarder.forward(path, dict(body), call.stream, ctx, call.wants_usage)
            return Reply.forwarded(fwd)
        if call.stream:
            events = call.events(dep, ctx)
            try:
                first = await events.__anext__()
            except StopAsyncIteration:
                raise UpstreamError(f"The upstream for model '{call.public_model}' sent an empty stream.") from None
            return Reply.translated_stream(first, events)
        return Reply.answer(await call.unary(dep, ctx))
