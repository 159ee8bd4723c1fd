"""Plain-ASGI request and response primitives for the hot routes.

Starlette's Request/Response cost more per call than the whole policy pipeline, so the
inference routes speak ASGI directly through these few helpers.
"""
from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from time import time_ns
from types import TracebackType
from typing import Any, Self

from gatehouse.asgi_ext import SPLICE, DisconnectWatch, disconnect_watch
from gatehouse.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from gatehouse.types import json_encode

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
JSON = b"application/json"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def request_id() -> str:
    """The gateway's id of a request: 32 hex digits, the first 12 the time in milliseconds (as
    UUIDv7 orders them) and 80 random bits. Time-ordered ids land at the end of the ledger's
    request_id index instead of at random pages of it: a random id made every insert slower as
    the table grew (SQLite, 512k rows: 15 to 27 µs a row against a flat 6.4)."""
    return (time_ns() // 1_000_000).to_bytes(6, "big").hex() + os.urandom(10).hex()

class ClientGone(Exception):
    """The client disconnected before we finished reading its request."""


class Request:
    __slots__ = ("scope", "receive", "send", "headers", "method", "path", "request_id", "path_params",
                 "gateway_id", "client_request_id")

    def __init__(self, scope: Scope, receive: Receive, send: Send):
        self.scope = scope
        self.receive = receive
        self.send = send
        self.headers: dict[str, str] = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        # gateway_id is ours and unique: the ledger counts requests by it. A client's valid
        # x-request-id is kept for correlation (echoed, forwarded, stored next to ours) but
        # counts nothing - one id reused for many requests still makes many requests.
        self.gateway_id = request_id()
        rid = self.headers.get("x-request-id")
        self.client_request_id: str | None = rid if rid and _REQUEST_ID.match(rid) else None
        self.request_id = self.client_request_id or self.gateway_id  # the id the client sees
        self.path_params: dict[str, str] = {}

    @property
    def query(self) -> dict[str, str]:
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.scope.get("query_string", b"").decode("latin-1")))

    async def json_body(self, limit: int, any_content_type: bool = False) -> bytes:
        """Read a JSON body: 415 for another content type (unless `any_content_type`: Ollama's
        routes, whose own curl examples send JSON as curl's default form type), 413 past `limit`
        (checked on the declared length before reading, and on the bytes as they arrive)."""
        ctype = self.headers.get("content-type", "")
        if ctype and not any_content_type and not ctype.split(";", 1)[0].strip().lower().endswith("json"):
            raise UnsupportedMediaType(f"Content-Type must be application/json, got '{ctype[:60]}'.")
        declared = self.headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes.")
            except ValueError:
                raise InvalidRequest("Invalid Content-Length header.") from None
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                raise ClientGone()
            body = msg.get("body", b"")
            if body:
                size += len(body)
                if size > limit:
                    raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes.")
                chunks.append(body)
            if not msg.get("more_body", False):
                break
        if not size:
            raise InvalidRequest("Request body is empty; send a JSON object.", code="invalid_json")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class HangUp:
    """`with HangUp(req):` around work that does not read `receive` (an upstream call before
    any response byte): if the client's connection is lost meanwhile, the request's task is
    cancelled at once and the block raises ClientGone, so the upstream call is closed (the
    upstream stops generating) and the request settles as 499 (its concurrency slot freed).

    The cost is a callback slot set and cleared on the disconnect watch our server offers in
    the scope's extensions (asgi_ext.DISCONNECT, server/cycle.py); no task, no read. Under
    another ASGI server it does nothing: a hang-up is then noticed only when the response is
    written."""

    __slots__ = ("watch", "fired", "task")

    def __init__(self, req: Request):
        self.watch: DisconnectWatch | None = disconnect_watch(req.scope)
        self.task: asyncio.Task[Any] | None = None
        self.fired = False

    def __enter__(self) -> Self:
        watch = self.watch
        if watch is not None:
            if watch.gone:  # gone already (while the request was admitted)
                raise ClientGone()
            self.task = asyncio.current_task()
            watch.callback = self._fire
        return self

    def _fire(self) -> None:
        if self.task is not None:
            self.fired = True
            self.task.cancel()

    def off(self) -> None:
        """Stop watching (the response is about to start: from then on the writes notice)."""
        if self.watch is not None:
            self.watch.callback = None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.off()
        if self.fired and self.task is not None:
            self.task.uncancel()
            raise ClientGone() from None  # whatever the cancellation became on its way out


def header_list(request_id: str, extra: dict[str, str] | None = None) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-request-id", request_id.encode())]
    if extra:
        headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items())
    return headers


async def send_bytes(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]],
                     content_type: bytes = JSON) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers],
    })
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, obj: Any, headers: list[tuple[bytes, bytes]]) -> None:
    await send_bytes(send, status, json_encode(obj), headers)


async def stream_out(req: Request, status: int, headers: list[tuple[bytes, bytes]],
                     chunks: AsyncIterator[bytes], content_type: list[tuple[bytes, bytes]] | None = None,
                     splice: dict[str, Any] | None = None) -> bool:
    """Send a streaming response chunk by chunk. Returns False when the client went away
    (the upstream iteration is cancelled at once, so the upstream connection is closed).

    `splice`, an asgi_ext.splice_message for the same body: sent instead of iterating `chunks`
    when the server offers the splice (then `chunks` is only closed, never iterated)."""
    await req.send({"type": "http.response.start", "status": status,
                    "headers": [*(content_type or SSE_HEADERS), *headers]})
    send = req.send  # (after the start: app.py's status-tracking wrapper has stepped aside)
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while True:
            msg = await req.receive()
            if msg["type"] == "http.disconnect":
                gone = True
                task.cancel()
                return

    watcher = asyncio.ensure_future(watch())
    try:
        if splice is not None and SPLICE in req.scope.get("extensions", ()):
            await send(splice)  # the server relays the body and its last bytes (server/splice.py)
        else:
            async for chunk in chunks:
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        watcher.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return True
    except asyncio.CancelledError:
        if gone:
            task.uncancel()
            return False
        raise
    except OSError:
        return False
    finally:
        watcher.cancel()
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:
                pass
