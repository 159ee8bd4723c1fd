"""CORS for browser clients (Open WebUI, in-browser playgrounds), without credentials.

Why not Starlette's CORSMiddleware: it wrapped every `send` of every request, and a
streamed answer sends once per chunk, so that wrapper was ~10% of the gateway's CPU while
relaying streams. Here a request without an `Origin` header (SDKs, curl, Claude Code:
nearly all traffic) costs one dict lookup; a browser request gets its headers added to the
response start by a wrapper, and a preflight is answered here without reaching a route.
"""
from __future__ import annotations

from typing import Any

from gatehouse.api.http import Send

ALLOW_METHODS = b"DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
# Response headers a browser script may read: correlation, rate limits (policy/limits.py) and
# usage (metering/meter.py, the token-count header of /v1/messages/count_tokens), and the
# guardrail checks that matched (policy/guardrail_events.py).
EXPOSE_HEADERS = b", ".join((
    b"x-request-id", b"retry-after",
    b"x-ratelimit-limit-requests", b"x-ratelimit-remaining-requests", b"x-ratelimit-reset-requests",
    b"x-ratelimit-limit-tokens", b"x-ratelimit-remaining-tokens", b"x-ratelimit-reset-tokens",
    b"x-gatehouse-tokens-input", b"x-gatehouse-tokens-output", b"x-gatehouse-cost-usd",
    b"x-gatehouse-token-count", b"x-gatehouse-guardrails",
))
MAX_AGE = b"600"


class Cors:
    def __init__(self, origins: list[str]):
        self.enabled = bool(origins)
        self.any_origin = "*" in origins
        self.origins = frozenset(origins)

    def allow_origin(self, origin: str) -> bytes | None:
        """The Access-Control-Allow-Origin value for `origin`, or None when it is not allowed."""
        if self.any_origin:
            return b"*"
        return origin.encode("latin-1") if origin in self.origins else None

    def _vary(self) -> list[tuple[bytes, bytes]]:
        return [] if self.any_origin else [(b"vary", b"Origin")]

    def preflight(self, origin: str, request_headers: str | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """(status, headers, body) answering an OPTIONS preflight."""
        allowed = self.allow_origin(origin)
        if allowed is None:
            return 400, [(b"content-type", b"text/plain; charset=utf-8"), *self._vary()], b"Disallowed CORS origin"
        headers = [(b"access-control-allow-origin", allowed), (b"access-control-allow-methods", ALLOW_METHODS),
                   (b"access-control-max-age", MAX_AGE), (b"content-type", b"text/plain; charset=utf-8"),
                   *self._vary()]
        if request_headers:
            headers.append((b"access-control-allow-headers", request_headers.encode("latin-1")))
        return 200, headers, b"OK"

    def wrap(self, origin: str, send: Send) -> Send:
        """`send` with the CORS headers added to the response start (when `origin` is allowed)."""
        allowed = self.allow_origin(origin)
        extra = [(b"access-control-allow-origin", allowed), (b"access-control-expose-headers", EXPOSE_HEADERS)] \
            if allowed is not None else []
        extra += self._vary()
        if not extra:
            return send

        async def cors_send(message: dict[str, Any]) -> None:  # any other message as it is (the splice too)
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        return cors_send
