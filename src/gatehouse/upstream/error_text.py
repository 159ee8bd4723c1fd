"""What of an upstream's error reaches the client, and what reaches the operator's log.

An upstream's error body is untrusted text: it can hold the credential the upstream received,
its own URL, host and IPs, and a stack trace. None of it is shown to the client. The client
gets a message the gateway writes: the public model, the upstream's status and — where the
upstream named one — its error type/code, only when that value is on its dialect's allow-list
(`SAFE_KINDS`). The upstream's own text goes to the operator's log (WARNING, logger
`gatehouse.upstream`) after `scrub()` has removed credentials, URLs, hosts, IPs and traces.
The allow-list and the rules are documented in docs/errors.md.
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from typing import Any

from gatehouse.errors import UpstreamContextLength, UpstreamStatus, classify_upstream_status

log = logging.getLogger("gatehouse.upstream")

# Error types and codes each upstream dialect documents; anything else is not repeated to clients.
SAFE_KINDS: dict[str, frozenset[str]] = {
    "openai": frozenset({
        "invalid_request_error", "authentication_error", "permission_error", "not_found_error",
        "rate_limit_error", "server_error", "api_error", "insufficient_quota", "tokens", "requests",
        "context_length_exceeded", "rate_limit_exceeded", "invalid_api_key", "model_not_found",
        "invalid_value", "invalid_type", "missing_required_parameter", "unsupported_parameter",
        "unsupported_value", "string_above_max_length", "content_filter", "content_policy_violation",
        "invalid_prompt", "billing_hard_limit_reached", "server_overloaded", "engine_overloaded",
        # vLLM, TGI and FastAPI-based servers
        "BadRequestError", "NotFoundError", "InternalServerError", "ServiceUnavailableError",
        "RateLimitError", "validation", "overloaded", "generation", "incomplete_generation",
    }),
    "anthropic": frozenset({
        "invalid_request_error", "authentication_error", "permission_error", "not_found_error",
        "request_too_large", "rate_limit_error", "api_error", "overloaded_error", "timeout_error",
        "billing_error",
    }),
    "ollama": frozenset(),  # Ollama's errors are a bare message string, without a type
    "bedrock": frozenset({
        "ValidationException", "ThrottlingException", "ServiceQuotaExceededException",
        "TooManyRequestsException", "AccessDeniedException", "ResourceNotFoundException",
        "ModelNotReadyException", "ModelTimeoutException", "ModelErrorException",
        "ModelStreamErrorException", "InternalServerException", "ServiceUnavailableException",
        "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException",
        "IncompleteSignatureException", "MissingAuthenticationTokenException", "InvalidClientTokenId",
        "SignatureDoesNotMatch", "ConflictException",
    }),
    "gemini": frozenset({
        "INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE", "UNAUTHENTICATED",
        "PERMISSION_DENIED", "NOT_FOUND", "ABORTED", "ALREADY_EXISTS", "RESOURCE_EXHAUSTED",
        "CANCELLED", "DATA_LOSS", "UNKNOWN", "INTERNAL", "NOT_IMPLEMENTED", "UNIMPLEMENTED",
        "UNAVAILABLE", "DEADLINE_EXCEEDED", "API_KEY_INVALID",
    }),
}


def safe_kind(dialect: str, *names: str | None) -> str | None:
    """The upstream's error type/code as the client may see it ('type / code'), or None.
    Only values on the dialect's allow-list pass; they are our constants, not the upstream's bytes."""
    allowed = SAFE_KINDS.get(dialect, frozenset())
    kept = [n for n in names if isinstance(n, str) and n in allowed]
    return " / ".join(dict.fromkeys(kept)) or None


def _phrase(status: int) -> str:
    if status == 429:
        return "is rate limiting requests"
    if status in (401, 403):
        return "refused the gateway's credentials or permissions"
    if status == 404:
        return "does not know the requested model or route"
    if status == 413:
        return "found the request too large"
    if 400 <= status < 500:
        return "rejected the request"
    if status in (503, 529):
        return "is overloaded or unavailable"
    if status == 504:
        return "timed out"
    return "failed"


def client_message(model: str, status: int, kind: str | None = None, in_stream: bool = False) -> str:
    """The message the client sees for an upstream error: no upstream text in it."""
    where = "in the stream" if in_stream or not status else f"HTTP {status}"
    return f"The upstream for model '{model}' {_phrase(status)} ({where}{', ' + kind if kind else ''})."


# ---- scrubbing for the operator's log ----------------------------------------------------------

_TRACE = re.compile(r"Traceback \(most recent call last\)|^\s*File \"[^\"]*\", line \d+|^goroutine \d+ \[|"
                    r"^\s+at [\w$.<>]+\(|^panic: |^Exception in thread ", re.MULTILINE)
_SCRUB: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[\w.~+/=-]{4,}"), r"\1 <redacted>"),
    (re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]*"), "<redacted>"),  # JWTs
    (re.compile(r"(?i)(api[_-]?key|x-api-key|x-goog-api-key|authorization|(?:access|refresh|session|id)?[_-]?token|"
                r"secret(?:[_-]?key)?|password|passwd|credentials?|signature|x-amz-security-token)"
                r"(\"?\s*[:=]\s*\"?)(?:(?:bearer|basic|AWS4-HMAC-SHA256)\s+)?[^\s\"',;}]+"), r"\1\2<redacted>"),
    (re.compile(r"\b(?:sk|pk|rk|ak|key)-[\w-]{6,}"), "<redacted>"),
    (re.compile(r"\b(?:AKIA|ASIA|AIza)[\w-]{8,}"), "<redacted>"),
    (re.compile(r"(?<![\w+.-])[A-Za-z][\w+.-]*+://[^\s\"'<>]+"), "<url>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{1,4}(?![\w:])|\[?[0-9A-Fa-f:]*::[0-9A-Fa-f:]*\]?"),
     "<ip>"),
    (re.compile(r"(?i)(?<![\w.-])(?:[a-z0-9-]+\.)++(?:internal|local|localdomain|svc|cluster|corp|lan|intranet|com|net|org|io|"
                r"ai|cloud|dev)\b(?::\d+)?|\blocalhost(?::\d+)?\b"), "<host>"),
    (re.compile(r"(?<![\w./@-])(?:/[\w.@-]++){2,}/?"), "<path>"),
    (re.compile(r"[A-Za-z0-9+/_=-]{32,}"), "<redacted>"),  # long opaque runs: tokens, signatures, hashes
)


def scrub(text: str, limit: int = 500) -> str:
    """`text` without credentials, URLs, hosts, IPs, file paths or stack traces, on one line."""
    trace = _TRACE.search(text)
    if trace is not None:
        text = text[:trace.start()].rstrip() + " [stack trace removed]"
    text = text[:2 * limit]  # bounded work per error: the patterns run on untrusted text
    for pattern, repl in _SCRUB:
        text = pattern.sub(repl, text)
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")


def note(dialect: str, model: str, status: int, text: str | bytes) -> None:
    """Log an upstream's error text for the operator, scrubbed."""
    if log.isEnabledFor(logging.WARNING):
        raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        log.warning("upstream (%s) error for model %s, status %s: %s", dialect, model, status or "in-stream",
                    scrub(raw) or "(empty body)")


# ---- Retry-After --------------------------------------------------------------------------------

_DELTA = re.compile(r"\d{1,7}")
_HTTP_DATE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")
_SECONDS = re.compile(r"(\d{1,7})(?:\.\d+)?s")


def retry_after(headers: Any, delay: str | None = None) -> dict[str, str]:
    """The upstream's Retry-After (delta seconds or an HTTP date) to pass on to the client, or
    Google's RetryInfo `retryDelay` ("30s") as one; anything malformed is dropped."""
    value = headers.get("Retry-After") if headers is not None else None
    if isinstance(value, str):
        value = value.strip()
        if _DELTA.fullmatch(value) or _HTTP_DATE.fullmatch(value):
            return {"retry-after": value}
    if delay:
        m = _SECONDS.fullmatch(delay.strip())
        if m:
            return {"retry-after": str(max(1, math.ceil(float(delay.strip()[:-1]))))}
    return {}


def first_kind(dialect: str, names: Iterable[str | None]) -> str | None:
    """The first allow-listed name, for `UpstreamStatus.upstream_type`."""
    allowed = SAFE_KINDS.get(dialect, frozenset())
    return next((n for n in names if isinstance(n, str) and n in allowed), None)


# An upstream's "the prompt does not fit the context window" error, in each server's words:
# OpenAI's code and message, vLLM's message, Anthropic's, llama.cpp server's type and message,
# Ollama's, Bedrock's. Read from the first 4 KiB of a 400/422 body; never shown to the client.
_CONTEXT_LENGTH = re.compile(
    rb"(?i)context_length_exceeded|maximum context length|prompt is too long|exceed_context_size|"
    rb"exceeds? the (?:available |maximum |model's )?context (?:size|length|window)|"
    rb"input length exceeds|input is too long|prompt (?:length|tokens?) exceeds?")


def context_length(status: int, text: str | bytes) -> bool:
    """Whether an upstream's error answer is its context-length error."""
    if status not in (400, 422):
        return False
    raw = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return _CONTEXT_LENGTH.search(raw, 0, 4096) is not None


def upstream_status(status: int, model: str, dialect: str, text: str | bytes, *,
                    kinds: Iterable[str | None] = (), headers: Any = None,
                    retry_delay: str | None = None) -> UpstreamStatus:
    """The gateway error for an upstream's error answer: logged scrubbed, shown reduced."""
    names = tuple(kinds)
    note(dialect, model, status, text)
    if context_length(status, text):
        return UpstreamContextLength(client_message(model, status, safe_kind(dialect, *names)),
                                     upstream_status=status, upstream_type=first_kind(dialect, names))
    return classify_upstream_status(status, client_message(model, status, safe_kind(dialect, *names)),
                                    upstream_type=first_kind(dialect, names),
                                    headers=retry_after(headers, retry_delay))
