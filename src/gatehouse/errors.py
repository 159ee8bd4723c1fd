"""One error hierarchy for the whole gateway, rendered once per dialect at the edge.

    GatehouseError                      500 api_error
    ├── InvalidRequest                  400 invalid_request_error  (param names the field)
    │   └── ForbiddenField              400 a client tried to choose the upstream
    ├── AuthenticationFailed            401 missing, unknown, revoked or expired key
    ├── PermissionDenied                403 model (or admin route) not allowed
    ├── NotFound                        404 unknown model or route
    ├── MethodNotAllowed                405
    ├── Conflict                        409 admin: name taken, defined in config, still in use
    ├── PayloadTooLarge                 413 body over server.max_body_bytes
    ├── UnsupportedMediaType            415 not application/json
    ├── RateLimited                     429 limits and budgets (carries Retry-After)
    ├── ServiceUnavailable              503 draining, overloaded, store down with limits closed
    └── UpstreamError                   502 upstream unreachable, refused or malformed
        ├── UpstreamStatus              502 the upstream answered with an error status (ours to fix)
        │   ├── UpstreamRejected        400 it refused the client's request (400, 422)
        │   │   └── UpstreamContextLength   its context-length error (error_text.context_length)
        │   ├── UpstreamNotFound        404 it does not know the model or route
        │   ├── UpstreamTooLarge        413 it found the request too large
        │   ├── UpstreamRateLimited     429 it is rate limiting
        │   └── UpstreamOverloaded      503 it is overloaded (503, Anthropic's 529)
        ├── UpstreamTimeout             504
        └── UpstreamUnavailable         503 every deployment ejected by its circuit breaker
            └── UpstreamBusy            503 no connection free within the provider's pool_timeout

Messages are written for the client: they never contain a key, a credential, an internal
URL or a stack trace. Upstream error bodies never reach the client: it gets the status and an
allow-listed error type/code (upstream/error_text.py); their text goes to the log, scrubbed.
Which UpstreamStatus an upstream's status becomes is decided in one place,
`classify_upstream_status`; each dialect's parser (wire/errors_<dialect>.py) calls it.
"""
from __future__ import annotations

from typing import Any


class GatehouseError(Exception):
    status = 500
    type = "api_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}


class InvalidRequest(GatehouseError):
    status = 400
    type = "invalid_request_error"


class ForbiddenField(InvalidRequest):
    code = "forbidden_field"


class AuthenticationFailed(GatehouseError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(GatehouseError):
    status = 403
    type = "permission_error"
    code = "model_not_allowed"


class NotFound(GatehouseError):
    status = 404
    type = "not_found_error"
    code = "model_not_found"


class MethodNotAllowed(GatehouseError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class Conflict(GatehouseError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(GatehouseError):
    status = 413
    type = "request_too_large"
    code = "body_too_large"


class UnsupportedMediaType(GatehouseError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class RateLimited(GatehouseError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class ServiceUnavailable(GatehouseError):
    status = 503
    type = "overloaded_error"
    code = "service_unavailable"


class UpstreamError(GatehouseError):
    status = 502
    type = "upstream_error"
    code = "bad_gateway"


class UpstreamStatus(UpstreamError):
    """The upstream answered with an error status. The class says what that means for the
    client; `classify_upstream_status` picks it. This base is the 502 case: a 5xx, or an auth
    failure between the gateway and the upstream, is the gateway's problem, not the client's."""

    code = "upstream_error"

    def __init__(self, message: str, *, upstream_status: int, upstream_type: str | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.upstream_status = upstream_status
        self.upstream_type = upstream_type  # the upstream's own error type, when allow-listed


class UpstreamRejected(UpstreamStatus):
    """The upstream refused the client's request (bad parameters): the client's problem."""

    status = 400
    type = "invalid_request_error"
    code = "upstream_rejected"


class UpstreamNotFound(UpstreamRejected):
    status = 404


class UpstreamContextLength(UpstreamRejected):
    """The upstream said the prompt does not fit its context window (OpenAI's and vLLM's
    "maximum context length", Anthropic's "prompt is too long", llama.cpp's, Ollama's): a
    model's `context_window_fallbacks` may serve it (routing/route.py)."""

    code = "context_length_exceeded"


class UpstreamTooLarge(UpstreamRejected):
    status = 413
    type = "request_too_large"


class UpstreamRateLimited(UpstreamStatus):
    status = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"


class UpstreamOverloaded(UpstreamStatus):
    status = 503
    type = "overloaded_error"
    code = "upstream_unavailable"


# The upstream's status -> what it means for the client; any other status is UpstreamStatus (502).
_UPSTREAM_STATUS_CLASSES: dict[int, type[UpstreamStatus]] = {
    400: UpstreamRejected, 422: UpstreamRejected, 404: UpstreamNotFound, 413: UpstreamTooLarge,
    429: UpstreamRateLimited, 503: UpstreamOverloaded, 529: UpstreamOverloaded,
}


def classify_upstream_status(status: int, message: str, *, upstream_type: str | None = None,
                             code: str | None = None, headers: dict[str, str] | None = None) -> UpstreamStatus:
    """The gateway error for an upstream's error status (`code` overrides the class's code)."""
    cls = _UPSTREAM_STATUS_CLASSES.get(status, UpstreamStatus)
    return cls(message, upstream_status=status, upstream_type=upstream_type, code=code, headers=headers)


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


class UpstreamUnavailable(UpstreamError):
    status = 503
    type = "overloaded_error"
    code = "upstream_unavailable"


class UpstreamBusy(UpstreamUnavailable):
    """Our own connection cap, not an upstream failure: it does not count against its health."""

    code = "upstream_busy"
