"""The request path shared by every ingress dialect, after parsing and before rendering.

A dialect hands over a canonical request (and, when it has one, the raw decoded body for
the same-dialect fast path) together with a `Renderer` for its wire format. This module
walks the deployments of the model (failing over on upstream errors before the first byte
is sent), relays or translates the reply, and settles the Exchange exactly once.

Every upstream attempt is metered (metering/meter.py): `_attempt` opens its ledger record
before the call, a failover closes it with the error, and a non-streamed answer closes it
(and gets its x-gatehouse-* usage headers) just before it is sent; streams close it in the
pipeline's settle, after `ex.usage` holds the reported usage or an estimate of what was
generated before the stream was cut.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any, AsyncIterator, Callable, Protocol

from gatehouse.asgi_ext import splice_message
from gatehouse.observability.tracing import TRACEPARENT
from gatehouse.api.http import HangUp, Request, SSE_HEADERS, header_list, send_bytes, stream_out
from gatehouse.errors import GatehouseError, ServiceUnavailable, UpstreamBusy, UpstreamError, UpstreamUnavailable
from gatehouse.metering.tokens import estimate_json_output, estimate_result, usage_or_estimate
from gatehouse.observability.safe import describe
from gatehouse.policy.guardrails.output import guard_events, guard_response
from gatehouse.policy.guardrails.step import GUARD, Guard, GuardrailBlocked
from gatehouse.policy.pipeline import Exchange
from gatehouse.providers.base import CallContext, Forwarded, StreamTally
from gatehouse.upstream.client import upstream_error
from gatehouse.runtime import Deployment, ModelEntry, Runtime
from gatehouse.types import (
    ChatResponse,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    Usage,
)

log = logging.getLogger("gatehouse.flow")


class StreamEncoder(Protocol):
    def encode(self, ev: StreamEvent) -> bytes: ...
    def error(self, message: str, type_: str = "api_error") -> bytes: ...


class Renderer(Protocol):
    dialect: str

    def response(self, resp: ChatResponse, public_model: str) -> bytes: ...
    def stream_encoder(self, public_model: str) -> StreamEncoder: ...


# How a canonical call is made for one deployment: chat, completion, ... (bound by the caller)
Unary = Callable[[Deployment, CallContext], Any]
Streaming = Callable[[Deployment, CallContext], AsyncIterator[StreamEvent]]


def _is_retryable(err: GatehouseError) -> bool:
    return isinstance(err, UpstreamError) and err.status >= 500


def _record_health(dep: Deployment, err: GatehouseError) -> None:
    """Connect errors, timeouts and 5xx count against the deployment's breaker; an answer
    (even a 4xx) shows it alive; our own connection cap says nothing about it."""
    if _is_retryable(err):
        if not isinstance(err, UpstreamBusy):
            dep.breaker.record_failure()
    elif isinstance(err, UpstreamError):
        dep.breaker.record_success()


def all_ejected(entry: ModelEntry) -> UpstreamUnavailable:
    """Every deployment of the model is ejected: fail fast, saying when one takes a probe."""
    wait = min(dep.breaker.retry_after() for dep in entry.deployments)
    return UpstreamUnavailable(f"Every upstream for model '{entry.name}' is failing; retry later.",
                               headers={"retry-after": str(max(1, math.ceil(wait)))})


def _context(ex: Exchange, dep: Deployment, entry: ModelEntry, forward_headers: dict[str, str]) -> CallContext:
    ex.deployment = dep.upstream_model
    ex.provider = dep.provider_name
    return CallContext(ex.request_id, entry.name, dep.upstream_model, forward_headers, dep.model_swap, ex.stream,
                       ex.notes.get(TRACEPARENT))


class Dispatch:
    """One request's trip to the upstream and back."""

    hangup: HangUp  # watches for the client hanging up until the response starts

    def __init__(self, rt: Runtime, req: Request, ex: Exchange, entry: ModelEntry, renderer: Renderer,
                 forward_headers: dict[str, str] | None = None):
        self.rt = rt
        self.req = req
        self.ex = ex
        self.entry = entry
        self.renderer = renderer
        self.forward_headers = forward_headers or {}

    def _headers(self) -> list[tuple[bytes, bytes]]:
        return header_list(self.ex.request_id, self.ex.response_headers)

    def _attempt(self, dep: Deployment) -> CallContext:
        self.rt.meter.begin_attempt(self.ex, dep)
        return _context(self.ex, dep, self.entry, self.forward_headers)

    def _failover(self, err: GatehouseError) -> None:
        self.rt.meter.fail_attempt(self.ex, err)

    # ---- unary ----------------------------------------------------------------------------

    async def unary(self, call: Unary, passthrough: tuple[str, dict[str, Any]] | None = None,
                    render: Callable[[Any], bytes] | None = None) -> None:
        """Non-streamed: forward raw when the deployment speaks our dialect, else translate.
        A client that hangs up while the upstream works cancels the call (HangUp): the
        attempt settles as 499 with the prompt's estimate."""
        with HangUp(self.req) as self.hangup:
            await self._unary(call, passthrough, render)

    async def _unary(self, call: Unary, passthrough: tuple[str, dict[str, Any]] | None,
                     render: Callable[[Any], bytes] | None) -> None:
        last: GatehouseError | None = None
        for dep in self.entry.deployments:
            if not dep.breaker.allow():
                continue
            ctx = self._attempt(dep)
            try:
                if passthrough is not None and self._can_forward(dep):
                    path, body = passthrough
                    fwd: Forwarded = await dep.provider.forward(path, dict(body), False, ctx, False)  # type: ignore[attr-defined]
                    self.hangup.off()
                    dep.breaker.record_success()
                    self.ex.usage = usage_or_estimate(fwd.usage, self.ex.prompt_estimate,
                                                      lambda: estimate_json_output(fwd.body or b""))  # noqa: B023 - called at once
                    self.ex.status = fwd.status
                    self.rt.meter.record_unary(self.ex)
                    await send_bytes(self.req.send, fwd.status, fwd.body or b"", self._headers(),
                                     fwd.content_type.encode("latin-1"))
                    return
                result = await call(dep, ctx)
            except GatehouseError as err:
                _record_health(dep, err)
                if _is_retryable(err) and dep is not self.entry.deployments[-1]:
                    log.warning("deployment %s/%s failed (%s); trying the next", dep.provider_name,
                                dep.upstream_model, err.code)
                    self._failover(err)
                    last = err
                    continue
                raise
            self.hangup.off()
            dep.breaker.record_success()
            self.ex.usage = usage_or_estimate(getattr(result, "usage", None), self.ex.prompt_estimate,
                                              lambda: estimate_result(result))  # noqa: B023 - called at once
            guard: Guard | None = self.ex.notes.get(GUARD)
            if guard is not None and guard.pending is not None:
                await guard.passed()  # mode: parallel; a block raises: the answer is discarded, tokens billed
            if guard is not None and guard.plan.checks_output:
                await guard_response(guard, result, self.ex.request_id)  # a block raises: an error, tokens billed
            self.ex.status = 200
            out = render(result) if render else self.renderer.response(result, self.entry.name)
            self.rt.meter.record_unary(self.ex)
            await send_bytes(self.req.send, 200, out, self._headers())
            return
        raise last or all_ejected(self.entry)

    def needs_translation(self) -> bool:
        """Whether some deployment cannot take the client's body as is, so the dialect must
        build a canonical request (a pure pass-through model never needs one)."""
        return not all(self._can_forward(dep) for dep in self.entry.deployments)

    def _can_forward(self, dep: Deployment) -> bool:
        return (dep.passthrough_dialect == self.renderer.dialect or self.renderer.dialect in dep.also_forwards) \
            and not self.rt.pipeline_needs_body and not self._guarded()

    def _guarded(self) -> bool:
        """A guardrail redacted the prompt (the raw body must not go upstream), checks the
        answer (which must arrive as canonical events) or holds it for a parallel guard: no
        pass-through for this request."""
        guard: Guard | None = self.ex.notes.get(GUARD)
        return guard is not None and (guard.rewritten or guard.plan.checks_output or guard.pending is not None)

    # ---- streaming ---------------------------------------------------------------------------

    async def stream(self, call: Streaming, passthrough: tuple[str, dict[str, Any]] | None = None,
                     client_wants_usage: bool = False, encoder: StreamEncoder | None = None) -> None:
        with HangUp(self.req) as self.hangup:  # until the first byte; then stream_out watches
            await self._stream(call, passthrough, client_wants_usage, encoder)

    async def _stream(self, call: Streaming, passthrough: tuple[str, dict[str, Any]] | None,
                      client_wants_usage: bool, encoder: StreamEncoder | None) -> None:
        self.ex.stream = True
        last: GatehouseError | None = None
        for dep in self.entry.deployments:
            if not dep.breaker.allow():
                continue
            ctx = self._attempt(dep)
            try:
                if passthrough is not None and self._can_forward(dep):
                    path, body = passthrough
                    fwd = await dep.provider.forward(path, dict(body), True, ctx, client_wants_usage)  # type: ignore[attr-defined]
                    self.hangup.off()
                    dep.breaker.record_success()
                    await self._relay_forwarded(fwd)
                    return
                events = call(dep, ctx)
                first = await events.__anext__()
            except StopAsyncIteration:
                last = UpstreamError(f"The upstream for model '{self.entry.name}' sent an empty stream.")
                dep.breaker.record_failure()
                self._failover(last)
                continue
            except GatehouseError as err:
                _record_health(dep, err)
                if _is_retryable(err) and dep is not self.entry.deployments[-1]:
                    self._failover(err)
                    last = err
                    continue
                raise
            self.hangup.off()
            dep.breaker.record_success()
            guard: Guard | None = self.ex.notes.get(GUARD)
            if guard is not None and guard.pending is not None:  # mode: parallel: nothing goes out before it passes
                try:
                    await guard.passed()
                except BaseException:
                    aclose = getattr(events, "aclose", None)
                    if aclose is not None:
                        await aclose()
                    raise
            if guard is not None and guard.plan.checks_output:
                events = guard_events(first, events, guard, self.ex.request_id)
                first = await events.__anext__()
            await self._relay_events(first, events, encoder or self.renderer.stream_encoder(self.entry.name))
            return
        raise last or all_ejected(self.entry)

    async def _stream_out(self, status: int, chunks: AsyncIterator[bytes],
                          content_type: list[tuple[bytes, bytes]] | None, splice: dict[str, Any] | None,
                          encoder: StreamEncoder) -> None:
        try:
            completed = await stream_out(self.req, status, self._headers(), chunks, content_type, splice)
        except asyncio.CancelledError:  # not the client (stream_out returns then): the shutdown grace is over
            err = ServiceUnavailable("The gateway is shutting down and cut the stream; retry on another instance.",
                                     code="shutting_down")
            try:  # so the client sees an error, not a quiet end (the connection closes after it)
                await self.req.send({"type": "http.response.body", "body": encoder.error(err.message, err.type),
                                     "more_body": False})
            except Exception as e:  # noqa: BLE001 - the stream is being cut either way
                log.debug("could not end the cut stream of request %s: %s", self.ex.request_id, describe(e))
            raise
        if not completed:
            self.ex.status, self.ex.error_type = 499, "client_closed"

    def _cut(self, encoder: StreamEncoder) -> bytes:
        """The error frame for a stream whose upstream body ended without its dialect's
        terminator (a close-delimited body cut short reads as a normal end to the transport)."""
        err = UpstreamError(f"The upstream for model '{self.entry.name}' ended the stream early.",
                            code="upstream_disconnected")
        self.ex.status, self.ex.error_type = err.status, err.code
        return encoder.error(err.message, err.type)

    def _unterminated(self, tally: StreamTally | None, encoder: StreamEncoder) -> bytes:
        """At the end of a relayed body: nothing if it ended properly, else the error frame
        (none of ours when the upstream's own error frame was relayed: the client has one)."""
        if tally is None or tally.finished:
            return b""
        if getattr(tally, "errored", False):
            self.ex.status, self.ex.error_type = 502, "upstream_error"
            return b""
        return self._cut(encoder)

    def _filtered(self, encoder: StreamEncoder) -> bytes:
        """Before the error frame of a stream a guardrail ended: OpenAI's own way of saying so,
        a last chunk with finish_reason content_filter (without its [DONE]: an error follows)."""
        if self.renderer.dialect != "openai":
            return b""
        return encoder.encode(StreamEnd("content_filter")).split(b"data: [DONE]", 1)[0]

    async def _relay_forwarded(self, fwd: Forwarded) -> None:
        ex = self.ex
        if fwd.chunks is None:  # the upstream answered a stream request with plain JSON
            ex.usage = usage_or_estimate(fwd.usage, ex.prompt_estimate, lambda: estimate_json_output(fwd.body or b""))
            ex.status = fwd.status
            await send_bytes(self.req.send, fwd.status, fwd.body or b"", self._headers(),
                             fwd.content_type.encode("latin-1"))
            return
        encoder = self.renderer.stream_encoder(self.entry.name)
        ex.status = fwd.status
        tally = fwd.tally
        source = fwd.chunks

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in source:
                    if ex.first_token_at is None:
                        ex.first_token_at = time.monotonic()
                    yield chunk
            except GatehouseError as err:
                ex.status, ex.error_type = err.status, err.code
                yield encoder.error(err.message, err.type)
                return
            end = self._unterminated(tally, encoder)
            if end:
                yield end

        def fail(exc: BaseException) -> bytes:  # the upstream failed mid-stream (spliced relay)
            err = upstream_error(exc, self.entry.name)
            ex.status, ex.error_type = err.status, err.code
            return encoder.error(err.message, err.type)

        splice = None
        if fwd.splice is not None:
            resp, feed, flush = fwd.splice

            def end() -> bytes:  # the upstream body ended: its tail, and an error frame if it was cut
                tail: bytes = flush()
                return tail + self._unterminated(tally, encoder)

            def first_byte() -> None:
                if ex.first_token_at is None:
                    ex.first_token_at = time.monotonic()

            splice = splice_message(resp, feed, end, fail, first_byte)
        content_type = SSE_HEADERS if fwd.content_type.startswith("text/event-stream") else \
            [(b"content-type", fwd.content_type.encode("latin-1")), *SSE_HEADERS[1:]]
        try:
            await self._stream_out(fwd.status, chunks(), content_type, splice, encoder)
        finally:  # also when cancelled (shutdown grace over): bill what was relayed
            if tally is not None:
                ex.usage = tally.final_usage(ex.prompt_estimate)
            else:
                ex.usage = Usage(input_tokens=ex.prompt_estimate, estimated=True)

    async def _relay_events(self, first: StreamEvent, events: AsyncIterator[StreamEvent],
                            encoder: StreamEncoder) -> None:
        ex = self.ex
        ex.status = 200
        seen_chars = 0
        start_usage: Usage | None = None  # some upstreams report the prompt's tokens up front
        ended = False

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal seen_chars, start_usage, ended
            ev: StreamEvent | None = first
            try:
                while ev is not None:
                    if isinstance(ev, StreamStart):
                        start_usage = ev.usage
                    elif isinstance(ev, (TextDelta, ThinkingDelta)):
                        seen_chars += len(ev.text)
                        if ex.first_token_at is None:
                            ex.first_token_at = time.monotonic()
                    elif isinstance(ev, ToolCallDelta):
                        seen_chars += len(ev.arguments)
                    elif isinstance(ev, StreamEnd):
                        ex.usage = ev.usage
                        ended = True
                    yield encoder.encode(ev)
                    ev = await events.__anext__()
            except StopAsyncIteration:
                if not ended:  # (decoders raise on a cut; this is for one that just stops)
                    yield self._cut(encoder)
                return
            except GatehouseError as err:
                ex.status, ex.error_type = err.status, err.code
                if isinstance(err, GuardrailBlocked):
                    yield self._filtered(encoder)
                yield encoder.error(err.message, err.type)
            finally:
                aclose = getattr(events, "aclose", None)
                if aclose is not None:
                    await aclose()

        # An encoder may stream another format than SSE (Ollama: NDJSON) and says so.
        try:
            await self._stream_out(200, chunks(), getattr(encoder, "stream_headers", None), None, encoder)
        finally:  # also when cancelled (shutdown grace over)
            if ex.usage is None:  # cut by the client, the upstream or shutdown: estimate what was generated
                input_tokens = start_usage.input_tokens if start_usage and start_usage.input_tokens \
                    else ex.prompt_estimate
                ex.usage = Usage(input_tokens=input_tokens, output_tokens=(seen_chars + 3) // 4, estimated=True,
                                 cache_read_tokens=start_usage.cache_read_tokens if start_usage else 0)
