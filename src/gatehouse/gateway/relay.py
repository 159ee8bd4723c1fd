"""One reply shape, one relay: how an upstream's answer reaches the client.

A `Reply` is what an attempt returns at the first byte: a forwarded answer (the client's dialect
on both sides; pass-through is the identity translation, bytes relayed as they are) or a translated
one (canonical, rendered here in the client's dialect). Unary: status, content type, body and usage,
or the canonical result. Stream: frames plus a tally (usage, finished, what was relayed), and for a
forwarded stream the optional splice source; or the first canonical event and the rest.

The bookkeeping both kinds share lives here once: the first-token time, the usage to bill (the
upstream's report, else an estimate of what was relayed), the 499 of a client that went away, the
error frame that ends a cut or failed stream, the shutdown frame. Guardrail output filters apply
here to canonical events and answers (policy/guardrails/output.py), so every dialect gets them;
a unary answer the call can read (`Call.read_answer`) is checked as forwarded, and passes through
unchanged unless a check redacts it; other guarded requests are not forwarded (gateway/handle.py).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from gatehouse.api.http import SSE_HEADERS, Request, header_list, send_bytes, stream_out
from gatehouse.asgi_ext import SpliceSource, splice_message
from gatehouse.errors import GatehouseError, ServiceUnavailable, UpstreamError
from gatehouse.metering.tokens import estimate_json_output, estimate_result, usage_or_estimate
from gatehouse.observability.safe import describe
from gatehouse.policy.guardrail_events import verdict_header
from gatehouse.policy.guardrails.output import check_forwarded, guard_events, guard_forwarded, guard_response
from gatehouse.policy.guardrails.step import GuardrailBlocked
from gatehouse.types import StreamEnd, StreamEvent, StreamStart, TextDelta, ThinkingDelta, ToolCallDelta, Usage
from gatehouse.upstream.client import upstream_error
from gatehouse.wire import finish

if TYPE_CHECKING:
    from gatehouse.gateway.endpoint import Call, StreamEncoder
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.providers.base import Forwarded, StreamTally

log = logging.getLogger("gatehouse.relay")


class Reply:
    """An upstream's answer, forwarded or translated, unary or streamed (see the module doc)."""

    __slots__ = ("status", "content_type", "body", "usage", "texts", "result", "frames", "tally", "splice", "first",
                 "events", "finish")

    def __init__(self, status: int = 200, content_type: str = "application/json") -> None:
        self.status = status
        self.content_type = content_type
        self.body: bytes | None = None  # a forwarded unary answer
        self.usage: Usage | None = None  # ... and the usage read from it
        self.texts: list[str] | None = None  # ... and its texts, when a guardrail asked (Forwarded.texts)
        self.finish: tuple[str, ...] | None = None  # ... and its finish reasons, read with the usage (traced)
        self.result: Any = None  # a translated unary answer (canonical)
        self.frames: AsyncIterator[bytes] | None = None  # a forwarded stream
        self.tally: StreamTally | None = None  # ... what its relay saw
        self.splice: tuple[SpliceSource, Callable[[bytes], bytes], Callable[[], bytes]] | None = None
        self.first: StreamEvent | None = None  # a translated stream: its first event
        self.events: AsyncIterator[StreamEvent] | None = None  # ... and the rest

    @classmethod
    def forwarded(cls, fwd: Forwarded) -> Reply:
        """The identity translation: the upstream's bytes as the client's."""
        r = cls(fwd.status, fwd.content_type)
        r.body, r.usage, r.frames, r.tally, r.splice = fwd.body, fwd.usage, fwd.chunks, fwd.tally, fwd.splice
        r.texts, r.finish = fwd.texts, fwd.finish
        return r

    @classmethod
    def answer(cls, result: Any) -> Reply:
        r = cls()
        r.result = result
        return r

    @classmethod
    def translated_stream(cls, first: StreamEvent, events: AsyncIterator[StreamEvent]) -> Reply:
        r = cls()
        r.first, r.events = first, events
        return r

    @classmethod
    def ready(cls, body: bytes, content_type: str = "application/json") -> Reply:
        """An answer the gateway gives itself (no upstream attempt)."""
        r = cls(200, content_type)
        r.body = body
        return r


async def relay(req: Request, ex: Exchange, call: Call, reply: Reply, end_attempt: Callable[[Exchange], None]) -> None:
    """Send `reply` to the client. `end_attempt` closes the attempt just before a unary answer
    goes out (its usage headers are set then); a stream's attempt is ended by the caller."""
    if reply.frames is not None:
        await _relay_forwarded_stream(req, ex, call, reply)
    elif reply.events is not None:
        await _relay_events(req, ex, call, reply)
    elif reply.result is not None:
        await _relay_answer(req, ex, call, reply.result, end_attempt)
    else:  # forwarded unary (or a stream request the upstream answered with plain JSON)
        body = reply.body or b""
        ex.usage = usage_or_estimate(reply.usage, ex.prompt_estimate, lambda: estimate_json_output(body))
        status, content_type = reply.status, reply.content_type
        guard = ex.guard
        if guard is not None and guard.plan.checks_output and not call.stream:  # (handle.py: a call that reads it)
            checked = (check_forwarded(guard, call, body, reply.texts) if not guard.plan.guard_output  # (no await)
                       else await guard_forwarded(guard, call, body, ex.request_id, reply.texts))  # a block raises
            if checked is not body:  # redacted: rendered as the translated path renders it
                body, status, content_type = checked, 200, "application/json"
            if guard.verdicts:
                verdict_header(ex)
        ex.status = status
        if ex.attempt_span is not None:  # traced: the answer's finish reasons, unless read with its usage
            read = reply.finish
            ex.finish_reasons = finish.forwarded(call.dialect, reply.body or b"") if read is None else read or None
        if not ex.stream:
            end_attempt(ex)
        await send_bytes(req.send, status, body, header_list(ex.request_id, ex.response_headers),
                         content_type.encode("latin-1"))


async def _relay_answer(req: Request, ex: Exchange, call: Call, result: Any,
                        end_attempt: Callable[[Exchange], None]) -> None:
    ex.usage = usage_or_estimate(getattr(result, "usage", None), ex.prompt_estimate, lambda: estimate_result(result))
    guard = ex.guard
    if guard is not None and guard.pending is not None:
        await guard.passed()  # mode: parallel; a block raises: the answer is discarded, tokens billed
    if guard is not None and guard.plan.checks_output:
        await guard_response(guard, result, ex.request_id)  # a block raises: an error, tokens billed
        verdict_header(ex)
    ex.status = 200
    out = call.render(result)
    if ex.attempt_span is not None:  # traced
        ex.finish_reasons = finish.canonical(getattr(result, "stop_reason", None))
    end_attempt(ex)
    await send_bytes(req.send, 200, out, header_list(ex.request_id, ex.response_headers))


# ---- streams -------------------------------------------------------------------------------------


async def _stream_out(req: Request, ex: Exchange, status: int, chunks: AsyncIterator[bytes],
                      content_type: list[tuple[bytes, bytes]] | None, splice: dict[str, Any] | None,
                      encoder: StreamEncoder) -> None:
    try:
        completed = await stream_out(req, status, header_list(ex.request_id, ex.response_headers), chunks,
                                     content_type, splice)
    except asyncio.CancelledError:  # not the client (stream_out returns then): the shutdown grace is over
        err = ServiceUnavailable("The gateway is shutting down and cut the stream; retry on another instance.",
                                 code="shutting_down")
        try:  # so the client sees an error, not a quiet end (the connection closes after it)
            await req.send({"type": "http.response.body", "body": encoder.error(err.message, err.type),
                            "more_body": False})
        except Exception as e:
            log.debug("could not end the cut stream of request %s: %s", ex.request_id, describe(e))
        raise
    if not completed:
        ex.status, ex.error_type = 499, "client_closed"


def _filtered(err: GatehouseError, encoder: StreamEncoder, dialect: str) -> bytes:
    """Before the error frame of a stream a guardrail ended: OpenAI's own way of saying so,
    a last chunk with finish_reason content_filter (without its [DONE]: an error follows)."""
    if not isinstance(err, GuardrailBlocked) or dialect != "openai":
        return b""
    return encoder.encode(StreamEnd("content_filter")).split(b"data: [DONE]", 1)[0]


def _cut(ex: Exchange, encoder: StreamEncoder) -> bytes:
    """The error frame for a stream whose upstream body ended without its dialect's
    terminator (a close-delimited body cut short reads as a normal end to the transport)."""
    err = UpstreamError(f"The upstream for model '{ex.model}' ended the stream early.", code="upstream_disconnected")
    ex.status, ex.error_type = err.status, err.code
    return encoder.error(err.message, err.type)


def _unterminated(ex: Exchange, tally: StreamTally | None, encoder: StreamEncoder) -> bytes:
    """At the end of a relayed body: nothing if it ended properly, else the error frame
    (none of ours when the upstream's own error frame was relayed: the client has one)."""
    if tally is None or tally.finished:
        return b""
    if getattr(tally, "errored", False):
        ex.status, ex.error_type = 502, "upstream_error"
        return b""
    return _cut(ex, encoder)


async def _relay_forwarded_stream(req: Request, ex: Exchange, call: Call, reply: Reply) -> None:
    encoder = call.forward_encoder()
    ex.status = reply.status
    tally = reply.tally
    source = reply.frames
    assert source is not None

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
        end = _unterminated(ex, tally, encoder)
        if end:
            yield end

    def fail(exc: BaseException) -> bytes:  # the upstream failed mid-stream (spliced relay)
        err = upstream_error(exc, ex.model)
        ex.status, ex.error_type = err.status, err.code
        return encoder.error(err.message, err.type)

    splice = None
    if reply.splice is not None:
        resp, feed, flush = reply.splice

        def end() -> bytes:  # the upstream body ended: its tail, and an error frame if it was cut
            tail: bytes = flush()
            return tail + _unterminated(ex, tally, encoder)

        def first_byte() -> None:
            if ex.first_token_at is None:
                ex.first_token_at = time.monotonic()

        splice = splice_message(resp, feed, end, fail, first_byte)
    content_type = SSE_HEADERS if reply.content_type.startswith("text/event-stream") else \
        [(b"content-type", reply.content_type.encode("latin-1")), *SSE_HEADERS[1:]]
    try:
        await _stream_out(req, ex, reply.status, chunks(), content_type, splice, encoder)
    finally:  # also when cancelled (shutdown grace over): bill what was relayed
        if tally is not None:
            ex.usage = tally.final_usage(ex.prompt_estimate)
            if ex.attempt_span is not None:  # traced: what the relay read of the finish reason
                reason = getattr(tally, "finish_reason", None)
                ex.finish_reasons = (reason,) if reason else None
        else:
            ex.usage = Usage(input_tokens=ex.prompt_estimate, estimated=True)


async def _relay_events(req: Request, ex: Exchange, call: Call, reply: Reply) -> None:
    """A translated stream: canonical events, through the guardrail filters, encoded."""
    first, events = reply.first, reply.events
    assert first is not None and events is not None
    guard = ex.guard
    if guard is not None and guard.pending is not None:  # mode: parallel: nothing goes out before it passes
        try:
            await guard.passed()
        except BaseException:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
            raise
    if guard is not None and guard.plan.checks_output:
        events = guard_events(first, events, guard, ex.request_id)
        first = await events.__anext__()
    encoder = call.encoder()
    ex.status = 200
    seen_chars = 0
    start_usage: Usage | None = None  # some upstreams report the prompt's tokens up front
    ended = False
    source = events

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
                    if ex.attempt_span is not None:  # traced
                        ex.finish_reasons = finish.canonical(ev.stop_reason)
                yield encoder.encode(ev)
                ev = await source.__anext__()
        except StopAsyncIteration:
            if not ended:  # (decoders raise on a cut; this is for one that just stops)
                yield _cut(ex, encoder)
            return
        except GatehouseError as err:
            ex.status, ex.error_type = err.status, err.code
            yield _filtered(err, encoder, call.dialect)
            yield encoder.error(err.message, err.type)
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()

    # An encoder may stream another format than SSE (Ollama: NDJSON) and says so.
    try:
        await _stream_out(req, ex, 200, chunks(), getattr(encoder, "stream_headers", None), None, encoder)
    finally:  # also when cancelled (shutdown grace over)
        if ex.usage is None:  # cut by the client, the upstream or shutdown: estimate what was generated
            input_tokens = start_usage.input_tokens if start_usage and start_usage.input_tokens \
                else ex.prompt_estimate
            ex.usage = Usage(input_tokens=input_tokens, output_tokens=(seen_chars + 3) // 4, estimated=True,
                             cache_read_tokens=start_usage.cache_read_tokens if start_usage else 0)
