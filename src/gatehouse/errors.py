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
        ├── UpstreamStatus              the upstream answered with an error status
        ├── UpstreamTimeout             504
        └── UpstreamUnavailable         503 every deployment ejected by its circuit breaker
            └── UpstreamBusy            503 no connection free within the provider's pool_timeout

Messages are written for the client: they never contain a key, a credential, an internal
URL or a stack trace. Upstream error bodies never reach the client: it gets the status and an
allow-listed error type/code (upstream/error_text.py); their text goes to the log, scrubbed.
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
    """The upstream answered with an error status; client errors keep their status."""

    def __init__(self, status: int, message: str, *, error_type: str | None = None, **kw: Any):
        super().__init__(message, **kw)
        # 4xx from the upstream are the client's problem (bad params, rate limits); 5xx and
        # auth failures between us and the upstream are ours and become 502.
        if status in (400, 404, 413, 422, 429):
            self.status = 400 if status == 422 else status
            self.type = {429: "rate_limit_error", 413: "request_too_large"}.get(
                status, "invalid_request_error"
            )
            self.code = "upstream_rate_limited" if status == 429 else "upstream_rejected"
        elif status in (503, 529):
            self.status = 503
            self.type = "overloaded_error"
            self.code = "upstream_unavailable"
        else:
            self.status = 502
            self.code = "upstream_error"
        self.upstream_status = status
        if error_type:
            self.upstream_type = error_type


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
