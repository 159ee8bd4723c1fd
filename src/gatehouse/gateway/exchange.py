"""Everything known about one request, filled in as it moves along the path.

Each stage writes its own typed slot (no string-keyed notes): the endpoint's `call`, the resolved
`entry`, the policy steps that `admitted` it, the limits reservation, the guardrail state, the
metering attempt, the trace spans. A slot is read by the stages after it and by the settle steps,
so what one step hands another is visible in the type, not in a comment.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gatehouse.gateway.endpoint import Call
    from gatehouse.gateway.relay import Reply
    from gatehouse.policy.cache import CacheTicket
    from gatehouse.policy.cache_memo import Recalled, RequestMemo
    from gatehouse.policy.guardrails.step import Guard
    from gatehouse.policy.pipeline import Step
    from gatehouse.policy.principal import Principal
    from gatehouse.routing.keepalive import HeldStream
    from gatehouse.routing.route import RouteState
    from gatehouse.routing.table import Deployment, ModelEntry
    from gatehouse.types import ChatRequest, CompletionRequest, EmbeddingRequest, Usage


class Exchange:
    """One request's state. Slots rather than a dict: ~40 are set per request on the hot path."""

    __slots__ = (
        "request_id", "surface", "dialect", "principal", "model", "deployment", "provider",
        "stream", "status", "usage", "started", "first_token_at", "finished_at",
        "prompt_estimate", "max_tokens", "response_headers", "error_type",
        "gateway_id", "client_request_id",
        # the path (gateway/handle.py)
        "call", "entry", "admitted", "attempt", "attempts", "attempt_started", "routing", "route_reason", "held",
        "deployment_filter",
        # policy steps and hooks
        "subject", "guard", "sensitive", "guard_audit", "guard_outcome", "limits", "metering", "cost_usd", "cache_hit",
        "request_headers", "cached", "cache", "cache_memo", "cache_recalled", "compliance", "virtual_route",
        # tracing (observability/tracing.py)
        "span", "attempt_span", "trace_wall", "traceparent", "finish_reasons",
    )

    def __init__(self, request_id: str, surface: str, dialect: str, gateway_id: str | None = None,
                 client_request_id: str | None = None):
        self.request_id = request_id  # the id the client sees (its own x-request-id when it sent one)
        self.gateway_id = gateway_id or request_id  # ours, unique per request: what the ledger counts
        self.client_request_id = client_request_id  # the client's x-request-id, for correlation only
        self.surface = surface  # chat | completions | embeddings | messages | ...
        self.dialect = dialect
        self.principal: Principal | None = None
        self.model = ""
        self.deployment = ""
        self.provider = ""
        self.stream = False
        self.status = 0
        self.usage: Usage | None = None
        self.started = time.monotonic()
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.prompt_estimate = 0
        self.max_tokens: int | None = None
        self.response_headers: dict[str, str] = {}
        self.error_type: str | None = None
        # The endpoint's parsed request and the model it resolved to.
        self.call: Call | None = None
        self.entry: ModelEntry | None = None
        # The policy steps whose admit passed, in order (settled in reverse; None: not admitted).
        self.admitted: list[Step] | None = None
        # The deployment of the attempt in progress (gateway/attempts.py), and how many were made.
        self.attempt: Deployment | None = None
        self.attempts = 0
        self.attempt_started = 0.0  # monotonic; set by routing's LoadHook only where a strategy reads load
        self.routing: RouteState | None = None  # its recovery after a failed plan (routing/route.py)
        self.route_reason = "primary"  # why the attempt in progress went where it did (routing/reasons.py)
        self.held: HeldStream | None = None  # a stream a cold start may hold: its keep-alives (routing/keepalive.py)
        # compliance routing: ids of the deployments that may receive the request's data class (the
        # router skips the others, fallbacks' too: policy/compliance.py); None: every deployment may
        self.deployment_filter: frozenset[int] | None = None
        # The canonical request the input guardrails read (and may redact); None: none was built.
        self.subject: ChatRequest | CompletionRequest | EmbeddingRequest | None = None
        self.guard: Guard | None = None  # this request's guardrail state, when a policy applies
        self.sensitive = False  # a guardrail `reroute` check matched the prompt
        self.guard_audit: Any = None  # what the guardrails decided: their audit as JSON (access log)
        self.guard_outcome: Any = None  # ... as an audit.Outcome (the trace's guardrail attributes)
        self.limits: Any = None  # the limits step's reservation, given back at settle
        self.metering: Any = None  # the metering hook's open attempt record
        self.cost_usd = 0.0  # of every attempt so far (metering), read by later settles (budgets)
        self.cache_hit = False  # answered without an upstream attempt
        self.request_headers: dict[str, str] | None = None  # the client's (model routes), for policy steps
        self.cached: Reply | None = None  # the cache step's answer: relayed instead of attempts
        self.cache: CacheTicket | None = None  # a cacheable miss: the cache reads its answer and stores it
        self.cache_memo: RequestMemo | None = None  # a hit the path may remember by its bytes (policy/cache_memo.py)
        self.cache_recalled: Recalled | None = None  # ... and a repeated request's: the cache step answers with it
        # compliance routing's decision (policy/compliance.py): data_class, reason, action, routed_from
        self.compliance: dict[str, str] | None = None
        self.virtual_route: dict[str, str] | None = None  # a virtual model's choice (routing/virtual.py)
        self.span: Any = None  # the request's trace span, when tracing is on
        self.attempt_span: Any = None
        self.trace_wall: tuple[int, float, str] | None = None  # (wall ns at start, monotonic start, method)
        self.traceparent: str | None = None  # the current attempt's W3C trace context, sent upstream
        self.finish_reasons: tuple[str, ...] | None = None  # (traced attempts) why the model stopped
