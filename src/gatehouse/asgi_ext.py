"""Our ASGI extensions: what the server (server/) can do beyond plain ASGI, and the contract the
app (api/, gateway/) and the upstream client (upstream/h1.py) meet it with.

Why extensions and not a look at which `send` we were given: a server capability that the app
finds by the identity of `send` switches off silently as soon as anything wraps `send` (the
CORS wrapper for browser requests, an OpenTelemetry middleware). As with Starlette's use of
`http.response.pathsend`, the server lists what it can do in `scope["extensions"]`, the app
checks that key and sends a message of that type, and wrappers pass messages they do not know
through unchanged. Under another ASGI server (uvicorn's own protocols) the keys are absent and
the app takes the plain path.

This module is a leaf: it imports nothing from gatehouse.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

# -- the splice: a same-dialect stream relayed from the upstream socket to the client socket ----

SPLICE = "gatehouse.response.splice"
"""Extension key and message type. The app sends, after `http.response.start` and instead of the
body chunks, `splice_message(...)`; the server relays the upstream body in the upstream
connection's data callback, writes the last bytes (`end()` or `fail(error)`) as a body chunk,
and returns when the upstream body is over. The response is still open afterwards: the app ends
it with `http.response.body` (more_body False) as usual. `send` raises ConnectionResetError when
the client went away meanwhile. The source is released (pooled or closed) either way."""


class SpliceSink(Protocol):
    """Receives an upstream body in the upstream connection's callbacks (the server's side)."""

    def data(self, chunk: bytes) -> None:
        """Body bytes as they arrived (already inflated)."""
        ...

    def end(self, exc: BaseException | None) -> None:
        """Called once: None at the end of the body, else the transport error."""
        ...


class SpliceSource(Protocol):
    """An upstream response that can hand its body on from its connection's data callback
    (upstream/h1.Response, structurally)."""

    def splice(self, sink: SpliceSink) -> None:
        """Deliver the rest of the body to `sink`, bytes already buffered first."""
        ...

    def pause_reading(self) -> None:
        """Stop reading the upstream socket (the client cannot take more for now)."""
        ...

    def resume_reading(self) -> None: ...

    def release(self) -> None:
        """Pool the connection after a complete body, close it otherwise."""
        ...


Feed = Callable[[bytes], bytes]
"""Arrived upstream bytes -> the bytes for the client (the dialect's pass-through filter:
usage sniffing, model swap). Runs in the data callback; it must not block."""
End = Callable[[], bytes]
"""At the end of the upstream body: the last bytes for the client (the filter's tail, and an
error frame if the stream was cut)."""
Fail = Callable[[BaseException], bytes]
"""The upstream failed mid-body: the error frame for the client (it also records the error)."""
FirstByte = Callable[[], None]
"""Called once, just before the first bytes go to the client (time to first token)."""


def splice_message(source: SpliceSource, feed: Feed, end: End, fail: Fail, first_byte: FirstByte) -> dict[str, Any]:
    """The message that asks the server to splice `source` into the response."""
    return {"type": SPLICE, "source": source, "feed": feed, "end": end, "fail": fail, "first_byte": first_byte}


# -- the hang-up watch: cancel work that is not reading `receive` when the client goes ------------

DISCONNECT = "gatehouse.disconnect"
"""Extension key; its value is `{"watch": DisconnectWatch}`, one per request."""


class DisconnectWatch(Protocol):
    """Per request: `gone` turns True when the client's connection is lost; `callback`, if the
    app set one, is then called once (and cleared) in the event loop. Costs the app an attribute
    write to arm and one to disarm; no task, no read of `receive`."""

    gone: bool
    callback: Callable[[], None] | None


def disconnect_watch(scope: dict[str, Any]) -> DisconnectWatch | None:
    """The request's watch when the server offers one, else None."""
    ext = scope.get("extensions")
    if ext:
        offered = ext.get(DISCONNECT)
        if offered:
            watch: DisconnectWatch = offered["watch"]
            return watch
    return None
