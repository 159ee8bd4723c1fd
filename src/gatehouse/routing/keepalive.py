"""Keep-alive frames to a streaming client while its request is held by a cold start.

A client with a short read timeout would give up on a request held for minutes while a GPU
backend wakes (routing/coldstart.py). For a streaming request the hold sends, every
`cold_start.keepalive_seconds`, a frame its dialect's clients skip: an SSE comment
(`: keep-alive`) for the OpenAI Chat/Completions and Responses APIs, an `event: ping` for
Anthropic's Messages API (its SDKs and Claude Code ignore pings). Ollama's NDJSON has no such
line: its clients are just held. The response head (200, text/event-stream, the headers known
so far, `x-gatehouse-cold-start: true` among them) goes out with the first keep-alive; from then
on a second response head is dropped (the relay's stream continues the same body), and an error
(the hold timing out, every deployment failing) ends the stream with the dialect's error frame
(gateway/handle.py), never a second status line.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gatehouse.api.http import SSE_HEADERS, Request, header_list

if TYPE_CHECKING:
    from gatehouse.errors import GatehouseError
    from gatehouse.gateway.endpoint import Call
    from gatehouse.gateway.exchange import Exchange

SSE_COMMENT = b": keep-alive\n\n"
ANTHROPIC_PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def keepalive_frame(dialect: str) -> bytes | None:
    """The frame a held stream of this client dialect is sent; None: nothing (Ollama's NDJSON)."""
    if dialect == "anthropic":
        return ANTHROPIC_PING
    if dialect == "ollama":
        return None
    return SSE_COMMENT


class HeldStream:
    """A streaming request that a cold start may hold: sends its keep-alives (see the module doc)."""

    __slots__ = ("call", "ex", "frame", "req", "started")

    def __init__(self, req: Request, ex: Exchange, call: Call, frame: bytes) -> None:
        self.req = req
        self.ex = ex
        self.call = call
        self.frame = frame
        self.started = False  # the response head went out with the first keep-alive

    async def ping(self) -> None:
        req = self.req
        if not self.started:
            self.started = True
            await req.send({"type": "http.response.start", "status": 200,
                            "headers": [*SSE_HEADERS, *header_list(self.ex.request_id, self.ex.response_headers)]})
            send = req.send

            async def body_only(message: dict[str, Any]) -> None:
                if message["type"] != "http.response.start":  # the relay's own head: already sent
                    await send(message)

            req.send = body_only
        await req.send({"type": "http.response.body", "body": self.frame, "more_body": True})

    async def fail(self, err: GatehouseError) -> None:
        """End the started stream with the dialect's error frame."""
        await self.req.send({"type": "http.response.body", "body": self.call.encoder().error(err.message, err.type),
                             "more_body": False})
