"""The request path of every model route, top to bottom, in one function.

    authenticate -> read + parse (the endpoint's Call) -> resolve (names, aliases, access)
    -> bind (canonical request, estimate) -> admit (policy steps, in their declared order)
    -> attempts (the router's plan; hooks: metering, health) -> relay (one reply shape;
    guardrail output filters) -> settle (the admitted steps, in reverse, in this `finally`)

app.py routes to it, renders errors at the edge and observes the finished exchange.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from gatehouse.api.http import ClientGone, HangUp, Request, header_list, send_bytes
from gatehouse.errors import GatehouseError
from gatehouse.gateway.relay import relay
from gatehouse.policy.guardrail_events import verdict_header

if TYPE_CHECKING:
    from gatehouse.gateway.endpoint import Call, Endpoint
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.policy.guardrails.step import Guard
    from gatehouse.runtime import Runtime


async def handle(rt: Runtime, req: Request, ex: Exchange, ep: Endpoint) -> None:
    ex.principal = principal = await rt.auth.authenticate(req.headers)
    raw = await req.json_body(rt.cfg.server.max_body_bytes, ep.any_content_type)
    cache = rt.cache
    directory = rt.access.current  # (what a memo made of this request holds for: policy/cache_memo.py)
    if cache is not None and cache.memos.held:  # the same bytes this consumer had answered from the cache
        recalled = cache.memos.recall(ep, raw, principal, req.headers, directory)
        if recalled is not None:
            memo = recalled.memo
            entry = ex.entry = rt.table.resolve(memo.name, principal)  # model access, as for any request
            if entry is memo.entry:
                ex.cache_recalled = recalled
                await _repeated_hit(rt, req, ex, memo.prompt_estimate, memo.max_tokens, memo.stream)
                return
    call = ep.parse(raw, req.headers)
    ex.call = call
    name = call.model
    if not name or name == "default":  # the group's default model (routing/policy_routes.py)
        name = call.model = rt.table.requested(name, principal)
        if not name:
            raise call.missing_model()
    virtual = rt.virtual.get(name) if rt.virtual else None
    if virtual is None:
        entry = ex.entry = rt.table.resolve(name, principal)
        ready = await call.bind(rt, ex, entry)
    else:  # a virtual model picks the model from the request (routing/virtual.py)
        entry, ready = await virtual.route(rt, ex, call, principal, req.headers)
    if rt.compliance is not None and ready is None:  # the request's data class may send it elsewhere
        served = rt.compliance.decide(ex, entry, call.subject, principal, req.headers)
        if served is not entry:
            entry = ex.entry = served
            ready = await call.bind(rt, ex, entry)
    if ready is not None:  # answered by the endpoint itself: nothing to admit or attempt
        ex.status = ex.status or ready.status
        await send_bytes(req.send, ready.status, ready.body or b"", header_list(ex.request_id, ex.response_headers),
                         ready.content_type.encode("latin-1"))
        return
    ex.model = entry.name
    ex.prompt_estimate = call.prompt_estimate
    ex.max_tokens = asked = call.max_tokens
    ex.subject = call.subject
    ex.request_headers = req.headers
    attempts = rt.attempts
    try:
        await rt.pipeline.admit(ex)
        if ex.guard is not None and ex.guard.verdicts:  # input checks matched: a header (policy/guardrail_events.py)
            verdict_header(ex)
        if ex.max_tokens is not None and ex.max_tokens != asked:  # the group's cap
            call.cap_max_tokens(ex.max_tokens)
        # (a cacheable miss keeps its pass-through: the cache stores the forwarded bytes, policy/cache.py)
        call.forwarding = call.path is not None and not rt.pipeline_needs_body and not _guarded(ex.guard, call)
        ex.stream = call.stream
        reply = ex.cached  # a cache hit: no attempt (and nothing to wait for)
        if reply is None:
            if call.stream and entry.route is not None and entry.route.cold_start is not None:
                _hold_with_keepalives(req, ex, call)
            with HangUp(req) as hangup:  # until the answer starts; then the relay's writes notice a hang-up
                reply = await attempts.run(ex, ep, call)
                if ex.cache is not None:
                    reply = ex.cache.tap(reply)
                hangup.off()
        await relay(req, ex, call, reply, attempts.end)
        made = ex.cache_memo  # a hit the cache step may remember, if groups and consumers did not change meanwhile
        if made is not None and virtual is None and ex.status == 200 and cache is not None \
                and directory is rt.access.current:
            cache.memos.keep(ep, raw, principal, made, name, entry, call.prompt_estimate, asked, directory)
    except BaseException as exc:
        _failed(ex, exc)
        held = ex.held
        if held is not None and held.started and isinstance(exc, GatehouseError):
            await held.fail(exc)  # keep-alives started the stream: it ends with an error frame
            return
        raise
    finally:
        attempts.end(ex)
        if ex.admitted is not None:
            await rt.pipeline.settle(ex)


async def _repeated_hit(rt: Runtime, req: Request, ex: Exchange, prompt_estimate: int, max_tokens: int | None,
                        stream: bool) -> None:
    """A request the cache answered before, by its bytes (policy/cache_memo.py): what parse, bind
    and the cache key would make of it is known; the policy steps run as for any request (the
    cache step answers with the entry `ex.cache_recalled` found), then the stored bytes go out as
    a forwarded answer's would (gateway/relay.py), and the steps settle."""
    entry = ex.entry
    assert entry is not None
    ex.model = entry.name
    ex.prompt_estimate = prompt_estimate
    ex.max_tokens = max_tokens
    ex.stream = stream
    ex.request_headers = req.headers
    try:
        await rt.pipeline.admit(ex)
        reply, recalled = ex.cached, ex.cache_recalled
        assert reply is not None and reply.body is not None and recalled is not None  # (the cache step answered)
        ex.usage = reply.usage
        ex.status = 200
        send = req.send
        await send({"type": "http.response.start", "status": 200, "headers": [
            *recalled.wire.hit_head(), *header_list(ex.request_id, ex.response_headers)]})
        await send({"type": "http.response.body", "body": reply.body})
    except BaseException as exc:
        _failed(ex, exc)
        raise
    finally:
        if ex.admitted is not None:
            await rt.pipeline.settle(ex)


def _hold_with_keepalives(req: Request, ex: Exchange, call: Call) -> None:
    """A stream to a model with a cold-start hold: keep-alive frames while it is held."""
    from gatehouse.routing.keepalive import HeldStream, keepalive_frame

    frame = keepalive_frame(call.dialect)
    if frame is not None:
        ex.held = HeldStream(req, ex, call, frame)


def _guarded(guard: Guard | None, call: Call) -> bool:
    """A guardrail redacted the prompt (the raw body must not go upstream), checks a streamed
    answer or one of a dialect the relay cannot read (either must arrive as canonical events),
    or holds it for a parallel guard: no pass-through. (A unary answer the call can read is
    checked as forwarded: gateway/relay.py.)"""
    return guard is not None and (guard.rewritten or guard.pending is not None or (
        guard.plan.checks_output and (call.stream or not call.reads_answers)))


def _failed(ex: Exchange, exc: BaseException) -> None:
    """How the request ended, as the client sees it (app.py renders it), before the steps settle."""
    if isinstance(exc, GatehouseError):
        ex.status, ex.error_type = exc.status, exc.code
    elif isinstance(exc, ClientGone):
        ex.status, ex.error_type = 499, "client_closed"
    elif isinstance(exc, asyncio.CancelledError):
        ex.status, ex.error_type = 499, "cancelled"
    elif isinstance(exc, Exception):
        ex.status, ex.error_type = 500, "internal"
