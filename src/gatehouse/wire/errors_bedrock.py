"""Bedrock's errors mapped onto the gateway's, in one place: error answers (type in the
`x-amzn-ErrorType` header, message in the body) and stream exceptions alike.

AWS's message text goes to the operator's log only (scrubbed: it names accounts, roles and
ARNs); the client sees the error type when it is on the allow-list (upstream/error_text.py).
Bedrock is only ever an upstream: no client speaks this dialect, so nothing is rendered here.
"""
from __future__ import annotations

import re
from typing import Any

import msgspec
from msgspec import Struct

from gatehouse.errors import GatehouseError, UpstreamContextLength, UpstreamTimeout, classify_upstream_status
from gatehouse.upstream.error_text import context_length, note, retry_after, safe_kind
from gatehouse.upstream.eventstream import EventMessage

# The IAM actions a call needs, named when AWS denies access.
INVOKE = "bedrock:InvokeModel"
INVOKE_STREAM = "bedrock:InvokeModelWithResponseStream"
_ACTION = re.compile(r"perform:\s*([a-z0-9-]+:[A-Za-z]+)")
_CREDENTIAL_ERRORS = {"UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException",
                      "IncompleteSignatureException", "MissingAuthenticationTokenException",
                      "InvalidClientTokenId", "SignatureDoesNotMatch"}


def bedrock_error(status: int, error_type: str, message: str, model: str, permission: str,
                  headers: Any = None) -> GatehouseError:
    """Map a Bedrock error type (header `x-amzn-ErrorType`, or a stream exception) to ours.

    `permission` is the IAM action the call needs, named when AWS denies access. AWS's message
    text goes to the operator's log only (scrubbed: it names accounts, roles and ARNs); the
    client sees the error type when it is a known one.
    """
    kind = error_type.split(":", 1)[0].strip()
    kind = kind[:1].upper() + kind[1:]  # stream exceptions are camelCase: throttlingException
    note("bedrock", model, status, f"{kind}: {message}")
    safe = safe_kind("bedrock", kind)
    named = f" ({safe})" if safe else ""
    wait = retry_after(headers)
    err: GatehouseError
    if kind in ("ThrottlingException", "ServiceQuotaExceededException", "TooManyRequestsException"):
        err = classify_upstream_status(429, f"Bedrock is throttling requests for model '{model}'{named}.",
                                       upstream_type=safe, headers=wait)
    elif kind == "ValidationException" and context_length(400, message):
        err = UpstreamContextLength(f"Bedrock rejected the request for model '{model}'{named}.",
                                    upstream_status=400, upstream_type=safe)
    elif kind == "ValidationException":
        err = classify_upstream_status(400, f"Bedrock rejected the request for model '{model}'{named}.",
                                       upstream_type=safe)
    elif kind == "AccessDeniedException":
        found = _ACTION.search(message)
        action = found.group(1) if found else permission
        err = classify_upstream_status(403, (
            f"AWS denied the gateway access to the Bedrock model behind '{model}': the gateway's AWS "
            f"identity needs the IAM permission {action} on that model (or inference profile), and "
            "access to the model must be enabled in the Bedrock console."), upstream_type=safe,
            code="upstream_access_denied")
    elif kind in _CREDENTIAL_ERRORS:
        err = classify_upstream_status(403, (
            f"AWS did not accept the gateway's credentials for model '{model}'{named}; check the "
            "gateway's AWS credential source and region."), upstream_type=safe, code="upstream_auth_failed")
    elif kind in ("ModelNotReadyException", "ServiceUnavailableException"):
        err = classify_upstream_status(503, f"The Bedrock model behind '{model}' is not available right now{named}.",
                                       upstream_type=safe, headers=wait)
    elif kind == "ResourceNotFoundException":
        err = classify_upstream_status(502, f"Bedrock does not know the model configured for '{model}'{named}.",
                                       upstream_type=safe, code="upstream_model_not_found")
    elif kind == "ModelTimeoutException":
        err = UpstreamTimeout(f"The Bedrock model behind '{model}' timed out{named}.")
    else:
        err = classify_upstream_status(
            status if status >= 500 else 502,
            f"Bedrock failed for model '{model}' ({f'HTTP {status}' if status else 'in the stream'}"
            f"{', ' + safe if safe else ''}).", upstream_type=safe)
    return err


class _AwsMessage(Struct):
    message: str | None = None
    Message: str | None = None


def error_message(raw: bytes) -> str:
    try:
        body = msgspec.json.decode(raw, type=_AwsMessage)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return raw.decode(errors="replace")[:300]
    return body.message or body.Message or ""


def stream_error(msg: EventMessage, model: str, permission: str) -> GatehouseError:
    """An exception frame in a ConverseStream (or a protocol-level error frame) as ours."""
    if msg.message_type == "error":  # protocol-level error: code and message in headers
        return bedrock_error(0, msg.headers.get(":error-code", ""), msg.headers.get(":error-message", ""),
                             model, permission)
    return bedrock_error(0, msg.event_type, error_message(msg.payload), model, permission)


def permission_for(url: str) -> str:
    """The IAM action a Bedrock Runtime URL needs (named when AWS denies access)."""
    return INVOKE_STREAM if url.endswith("-stream") else INVOKE


def error_from_response(status: int, raw: bytes, headers: Any, model: str, url: str = "") -> GatehouseError:
    """The gateway error for a Bedrock error answer: its type from `x-amzn-ErrorType`."""
    error_type = headers.get("x-amzn-ErrorType") if headers is not None else None
    return bedrock_error(status, error_type or "", error_message(raw), model, permission_for(url), headers)
