"""The config schema of request policies: guardrails, compliance routing and virtual models
(docs/guardrails.md, docs/policy-routing.md). A leaf, like config/schema.py, which re-exports it."""
from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, field

from gatehouse.config.schema_base import _Base

# ---- guardrails: named policies of checks (docs/guardrails.md; rules in policy/guardrails/config.py)

Action = Literal["block", "redact", "flag", "reroute"]
Stage = Literal["input", "output", "both"]
CheckType = Literal[
    "keywords", "regex", "payment_card", "iban", "us_ssn", "email", "phone", "ip_address",
    "aws_access_key", "private_key", "jwt", "github_token", "slack_token", "high_entropy",
    "prompt_injection", "guard_model",
]
GuardFormat = Literal["llamaguard", "shieldgemma", "granite_guardian", "regex"]


class GuardCheckConfig(_Base):
    type: CheckType
    action: Action = "block"
    name: str | None = None  # in errors, metrics and the audit; default: the type
    stage: Stage = "both"  # input (prompts), output (answers) or both; (`on:` would be a YAML boolean)
    words: list[str] = field(default_factory=list)  # keywords: case-insensitive, matched where a word starts
    patterns: list[str] = field(default_factory=list)  # regex: RE2 syntax (linear time)
    # regex: the longest text one pattern can match, for the streaming window (characters)
    max_length: int = 256
    # high_entropy: tokens at least this long whose Shannon entropy is at least `min_entropy` bits/char
    min_length: int = 24
    min_entropy: float = 4.0
    # guard_model: a configured model asked to judge the prompt (docs/guardrails.md#guard-models)
    model: str | None = None
    format: GuardFormat = "llamaguard"
    categories: dict[str, Action] = field(default_factory=dict)  # llamaguard: S1..S14 -> action (else `action`)
    unsafe_pattern: str | None = None  # regex format: RE2 pattern that marks the guard's answer unsafe
    timeout_seconds: float = 5.0
    on_error: Literal["open", "closed"] = "closed"  # the guard failed or timed out: let through, or refuse
    # guard_model on prompts: judge before the upstream call, or beside it with the answer held
    # until the guard passes (only for `private: true` models: the upstream sees the prompt first)
    mode: Literal["before", "parallel"] = "before"
    # action reroute: the data class a match gives the request (compliance routing may then send it
    # to a private model or refuse it); default: the most sensitive of compliance.classes
    data_class: str | None = None


class GuardPolicyConfig(_Base):
    checks: list[GuardCheckConfig]
    description: str | None = None


class GuardrailsConfig(_Base):
    policies: dict[str, GuardPolicyConfig] = field(default_factory=dict)
    # The access log's `guardrails` list: every check of the request (full), or only those that
    # did not pass (findings: matches, skipped checks, guard-model verdicts; a check not listed
    # passed). Metrics count every verdict either way (docs/guardrails.md#audit-and-metrics).
    audit_log: Literal["full", "findings"] = "full"


# ---- compliance routing (policy/compliance.py, docs/policy-routing.md) ------------------------


class ReroutePolicy(_Base):
    reroute: str  # the model (one that may receive the class) that serves the request instead


class ComplianceConfig(_Base):
    """Data classes: each request gets one (detector findings, its group's class, a header that
    can only raise it); a model that may not receive it sends the request to the class's policy."""

    # Least sensitive first; the first is a request's class when nothing raises it.
    classes: list[str] = field(default_factory=list)
    # A built-in guardrail detector (payment_card, us_ssn, iban, email, ...) -> the class its finding gives.
    detectors: dict[str, str] = field(default_factory=dict)
    # Per class: `deny` (403 naming the class) or `{reroute: <model>}`.
    policies: dict[str, Literal["deny"] | ReroutePolicy] = field(default_factory=dict)


# ---- virtual models (routing/virtual.py, docs/policy-routing.md#virtual-models) --------------


class RouteRuleConfig(_Base):
    """One rule of a `rules` router: every condition set must hold; the first matching rule wins."""

    model: str
    keywords: list[str] = field(default_factory=list)  # any of them in the last user message (case-insensitive)
    regex: str | None = None  # RE2, searched in the last user message
    min_prompt_tokens: Annotated[int, Meta(gt=0)] | None = None  # the prompt estimate is at least this
    tools: bool | None = None  # the request offers tools (true) / none (false)
    images: bool | None = None  # the request holds images
    groups: list[str] = field(default_factory=list)  # the caller's group is one of these
    user_agent: str | None = None  # RE2, searched in the User-Agent header


class SemanticRouteConfig(_Base):
    """A rules router's semantic signal, asked only when no rule matches."""

    model: str  # a configured embeddings model
    routes: dict[str, list[str]]  # model -> example utterances (their mean embedding is the route's centroid)
    min_similarity: Annotated[float, Meta(ge=-1, le=1)] = 0.5  # cosine; below it: the default route
    timeout_seconds: Annotated[float, Meta(gt=0, le=30)] = 1.0  # then the default route


class ClassifierRouteConfig(_Base):
    """A rules router's classifier: a small chat model labels the message (asked last, before the default)."""

    model: str  # a configured chat model
    labels: dict[str, str]  # label -> the model it routes to
    instructions: str | None = None  # the system prompt; default: "answer with one of <labels>"
    timeout_seconds: Annotated[float, Meta(gt=0, le=60)] = 2.0  # then the default route


class VirtualModelConfig(_Base):
    """A model name clients ask for that picks one of the configured models per request."""

    strategy: Literal["rules", "cheapest", "best"] = "rules"
    rules: list[RouteRuleConfig] = field(default_factory=list)  # rules: in order
    default: str | None = None  # rules: when no rule matches (required)
    semantic: SemanticRouteConfig | None = None  # rules: asked when no rule matches, before the default
    classifier: ClassifierRouteConfig | None = None  # rules: asked when neither rules nor semantic decided
    # cheapest: the models it chooses from; best: the same, best first
    candidates: list[str] = field(default_factory=list)
    # best: the most one request may cost (estimated, USD); the x-gatehouse-max-cost-usd header can lower it
    max_request_usd: Annotated[float, Meta(gt=0)] | None = None
    description: str | None = None
