"""The small Protocols every provider implements, and the per-call context they receive.

A provider is built once per configured upstream (it holds the pooled HTTP session, the
upstream auth and the base URL); each call gets a CallContext. Stream decoding state lives
in the per-call generator, so nothing is shared between requests.

Every upstream call goes out through `Provider._send`: the upstream auth (built from config by
upstream/auth.py from the type's `auth_scheme`) is applied after translation, transport
failures become gateway errors, and an error status is raised as the error its dialect's
parser (`parse_error`, from wire/errors_<dialect>.py) makes of the answer.

Core ability: `chat` / `chat_stream` on canonical types. Optional abilities are separate
Protocols, checked with isinstance at load time, never by provider name:
`Embedder`, `Completer`, `Passthrough` (same-dialect fast path), `ModelLister` and
`TokenCounter`.
"""
from __future__ import annotations

import ssl
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, Protocol, runtime_checkable

from msgspec import Struct, field

from gatehouse.asgi_ext import SpliceSource
from gatehouse.config import ProviderConfig
from gatehouse.errors import GatehouseError, UpstreamError
from gatehouse.tls import client_context
from gatehouse.types import (
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    StreamEvent,
    Usage,
)
from gatehouse.upstream.auth import NO_AUTH, AuthScheme, CredentialsUnavailable, UpstreamAuth, auth_from_config
from gatehouse.upstream.client import HttpPool, read_body, timeout, transport_errors
from gatehouse.upstream.pool import ConnectionLimit
from gatehouse.upstream.transport import UpstreamResponse
from gatehouse.wire.model_swap import ModelSwap


class CallContext(Struct):
    request_id: str
    public_model: str
    upstream_model: str
    # Client headers a provider may forward (e.g. anthropic-beta), already filtered.
    forward_headers: dict[str, str] = field(default_factory=dict)
    # For replies relayed untranslated: the deployment's upstream id -> the public name.
    model_swap: ModelSwap | None = None
    stream: bool = False  # a streamed call: the provider's first_byte_timeout applies
    # W3C trace context of this upstream attempt (observability/tracing.py), when tracing is on.
    traceparent: str | None = None
    # (guardrails) a forwarded unary answer's texts are checked: read them with its usage
    # (Forwarded.texts), instead of a second pass over the body (gateway/endpoint.py sets it)
    answer_texts: bool = False


class StreamTally(Protocol):
    """What a relayed stream learned on the way: usage, and whether it ended with its
    dialect's terminator (a stream that did not was cut, whatever the transport said)."""

    usage: Usage | None
    finished: bool

    def final_usage(self, prompt_estimate: int) -> Usage:
        """The usage to bill: the upstream's report, or an estimate (flagged) of what was
        relayed when the stream was cut before it."""
        ...


class Forwarded:
    """An upstream reply relayed without translation (same dialect on both sides).

    Non-stream: `body` holds the bytes and `usage` is read from them. Stream: iterate
    `chunks`; afterwards `tally` holds the usage seen. `release()` frees the connection.

    `splice`, when the provider offers it, is the same stream for the server's splice
    (asgi_ext.SPLICE) instead of `chunks`: (the upstream response as a SpliceSource, which
    can hand its body to a callback as it arrives; the function that turns arrived bytes into
    the bytes for the client; the one that flushes at the end). Using it means not iterating
    `chunks`.
    """

    __slots__ = ("status", "content_type", "body", "chunks", "usage", "tally", "release", "splice", "texts",
                 "finish")

    def __init__(self, status: int, content_type: str, *, body: bytes | None = None,
                 chunks: AsyncIterator[bytes] | None = None, usage: Usage | None = None,
                 tally: StreamTally | None = None, release: Any = None,
                 splice: tuple[SpliceSource, Callable[[bytes], bytes], Callable[[], bytes]] | None = None,
                 texts: list[str] | None = None, finish: tuple[str, ...] | None = None):
        self.status = status
        self.content_type = content_type
        self.body = body
        self.chunks = chunks
        self.usage = usage
        self.tally = tally
        self.release = release
        self.splice = splice
        self.texts = texts  # the answer's texts when CallContext.answer_texts asked for them (else None)
        # (traced attempts) the finish reasons, when read with the usage: () for none; None: not read
        self.finish = finish


class ErrorParser(Protocol):
    """A dialect's `error_from_response` (wire/errors_<dialect>.py): the gateway error for an
    upstream's error answer. `url` is the URL that was called (Bedrock names its IAM action)."""

    def __call__(self, status: int, raw: bytes, headers: Any, model: str, url: str = "") -> GatehouseError: ...


def _no_parser(status: int, raw: bytes, headers: Any, model: str, url: str = "") -> GatehouseError:
    raise NotImplementedError("a provider that calls an upstream sets parse_error")


class Provider(ABC):
    """Base class with the constructor every provider shares; chat and chat_stream are the
    two abilities every provider must have (a missing one fails at load, not per request)."""

    type_name: ClassVar[str] = ""
    dialect: ClassVar[str] = ""  # wire dialect spoken upstream, for the pass-through fast path
    auth_scheme: ClassVar[AuthScheme] = NO_AUTH  # how `api_key` (or AWS) authenticates upstream
    parse_error: ClassVar[ErrorParser] = staticmethod(_no_parser)  # the upstream dialect's error parser
    upstream_label: ClassVar[str] = "the upstream"  # named when the gateway has no credentials for it
    base_url: str = ""

    def __init__(self, name: str, cfg: ProviderConfig, http: HttpPool):
        self.name = name
        self.cfg = cfg
        self.http = http
        self.timeout = timeout(cfg.connect_timeout, cfg.read_timeout, cfg.pool_timeout)
        self.connections = ConnectionLimit(cfg.max_connections, cfg.pool_timeout)
        self.static_headers = {"Content-Type": "application/json", **cfg.headers}
        # https upstreams: the provider's CA bundle / client certificate, else the system trust
        self.ssl: ssl.SSLContext | bool = client_context(cfg) or True
        self.auth: UpstreamAuth = auth_from_config(self.auth_scheme, cfg)

    def _headers(self, call: CallContext) -> dict[str, str]:
        """A fresh header dict for one call (a provider adds per-call headers here)."""
        return dict(self.static_headers)

    async def _post(self, path: str, body: bytes, call: CallContext,
                    headers: dict[str, str] | None = None) -> Any:
        """`_send` to `base_url + path`, with this call's headers unless `headers` are given."""
        return await self._send(self.base_url + path, body, self._headers(call) if headers is None else headers,
                                call)

    async def _send(self, url: str, body: bytes, headers: dict[str, str], call: CallContext) -> UpstreamResponse:
        """POST `body` with `headers`, the upstream auth applied after translation, then the
        request id and trace context (unsigned: proxies may rewrite them). Transport failures
        become gateway errors; an error status (a redirect too: its body is not an answer, and
        it is never relayed) is raised as the error the dialect's `parse_error` makes of it."""
        auth = self.auth
        if auth.refreshes:
            try:
                await auth.ready()
            except CredentialsUnavailable as e:
                raise UpstreamError(f"Cannot call {self.upstream_label} for model '{call.public_model}': {e}",
                                    code="upstream_credentials_unavailable") from None
        auth.apply(headers, "POST", url, body)
        headers["x-request-id"] = call.request_id
        if call.traceparent is not None:
            headers["traceparent"] = call.traceparent
        async with transport_errors(call.public_model):
            resp: Any = await self.http.request("POST", url, data=body, headers=headers, timeout=self.timeout,
                                                limit=self.connections,
                                                first_byte=self.cfg.first_byte_timeout if call.stream else None,
                                                ssl=self.ssl)
        if resp.status >= 300:
            raw = await read_body(resp, call.public_model)
            raise self.parse_error(resp.status, raw, resp.headers, call.public_model, url)
        answer: UpstreamResponse = resp
        return answer

    @abstractmethod
    async def chat(self, req: ChatRequest, call: CallContext) -> ChatResponse: ...

    @abstractmethod
    def chat_stream(self, req: ChatRequest, call: CallContext) -> AsyncIterator[StreamEvent]: ...

    async def start(self) -> None:
        """Called once when the Runtime starts: warms the upstream credentials."""
        await self.auth.start()

    async def close(self) -> None:
        """Called once when the Runtime stops."""
        await self.auth.close()


@runtime_checkable
class Embedder(Protocol):
    async def embed(self, req: EmbeddingRequest, call: CallContext) -> EmbeddingResponse: ...


@runtime_checkable
class Completer(Protocol):
    async def complete(self, req: CompletionRequest, call: CallContext) -> ChatResponse: ...
    def complete_stream(self, req: CompletionRequest, call: CallContext) -> AsyncIterator[StreamEvent]: ...


@runtime_checkable
class Passthrough(Protocol):
    """Forward a body that is already in the upstream's dialect, only the model swapped."""

    async def forward(self, path: str, body: dict[str, Any], stream: bool, call: CallContext,
                      client_wants_usage: bool) -> Forwarded: ...


@runtime_checkable
class ModelLister(Protocol):
    async def list_models(self) -> list[str]: ...


@runtime_checkable
class TokenCounter(Protocol):
    """Exact prompt token counts from the upstream itself (e.g. Anthropic's count_tokens).

    `body` is the client's request when it is already in this provider's dialect (forwarded
    as is); otherwise `request` is the canonical request to translate.
    """

    async def count_tokens(self, call: CallContext, *, request: ChatRequest | None = None,
                           body: dict[str, Any] | None = None) -> int: ...
