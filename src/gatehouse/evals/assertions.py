"""Assertions over one model answer: each gives pass/fail, a score in 0..1 and a reason."""
from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from gatehouse.evals.suite import Assertion

# Phrases that open a refusal in the models teams run (English; a case can use `regex` for others).
_REFUSAL = re.compile(
    r"\b(i can(?:not|'t|’t)|i am unable|i'm unable|i’m unable|i won(?:'|’)t|i will not|i must decline|"
    r"i'm sorry, but|i’m sorry, but|sorry, i can|as an ai\b|i am not able to|i'm not able to|"
    r"cannot (?:help|assist|provide) with)",
    re.IGNORECASE,
)
# How a guardrail block reads from the client's side: an error whose type or code names it, or a
# content-filter finish.
_GUARD_WORDS = ("guardrail", "content_filter", "content_policy", "blocked")


@dataclass
class Outcome:
    """What one request returned, as the assertions see it."""

    status: int  # HTTP status; 0 when no answer arrived (transport error after retries)
    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"name": str, "arguments": Any}
    finish_reason: str | None = None
    latency_ms: float = 0.0
    cost_usd: float | None = None
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    error_type: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def guardrail_blocked(self) -> bool:
        if self.finish_reason == "content_filter":
            return True
        if self.ok or self.status == 0:
            return False
        labels = f"{self.error_type or ''} {self.error_code or ''}".lower()
        return any(w in labels for w in _GUARD_WORDS)


@dataclass
class Check:
    type: str
    passed: bool
    score: float
    reason: str
    weight: float = 1.0


Grader = Callable[[str, str], Awaitable[tuple[float, str]]]  # (rubric, output) -> (score, reason)


def _result(a: Assertion, passed: bool, reason: str, score: float | None = None) -> Check:
    return Check(a.type, passed, (1.0 if passed else 0.0) if score is None else score, reason, a.weight)


def _parse_json(text: str) -> Any:
    """The answer as JSON, allowing a fenced ```json block around it."""
    body = text.strip()
    fenced = re.match(r"^```(?:json)?\s*\n(.*?)\n?```$", body, re.S)
    return json.loads(fenced.group(1) if fenced else body)


def _subset(expected: Any, actual: Any) -> bool:
    """Every key of `expected` is in `actual` with a matching value (lists compare whole)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _subset(v, actual[k]) for k, v in expected.items())
    return bool(expected == actual)


def _tool_call(a: Assertion, out: Outcome) -> Check:
    want = a.value if isinstance(a.value, dict) else {"name": a.value}
    names = [c["name"] for c in out.tool_calls]
    for call in out.tool_calls:
        if call["name"] != want["name"]:
            continue
        if "arguments" not in want or _subset(want["arguments"], call["arguments"]):
            return _result(a, True, f"called {call['name']}")
        return _result(a, False, f"called {call['name']} with {json.dumps(call['arguments'])[:200]}")
    return _result(a, False, f"no call to {want['name']} (calls: {', '.join(names) or 'none'})")


def _text_check(a: Assertion, text: str) -> Check:
    v = str(a.value)
    t = a.type
    if t == "equals":
        return _result(a, text.strip() == v.strip(), "equal" if text.strip() == v.strip() else "differs")
    if t in ("contains", "not-contains"):
        found = v in text
        return _result(a, found == (t == "contains"), f"{'found' if found else 'did not find'} {v!r}")
    if t in ("icontains", "not-icontains"):
        found = v.lower() in text.lower()
        return _result(a, found == (t == "icontains"), f"{'found' if found else 'did not find'} {v!r} (any case)")
    found = re.search(v, text) is not None  # regex / not-regex
    return _result(a, found == (t == "regex"), f"/{v}/ {'matched' if found else 'did not match'}")


def _json_check(a: Assertion, text: str) -> Check:
    try:
        doc = _parse_json(text)
    except ValueError as e:
        return _result(a, False, f"not JSON: {e}")
    if a.type == "is-json":
        return _result(a, True, "valid JSON")
    try:
        jsonschema.validate(doc, a.value)
    except jsonschema.ValidationError as e:
        return _result(a, False, f"schema: {e.message}")
    except jsonschema.SchemaError as e:
        return _result(a, False, f"the assertion's schema is invalid: {e.message}")
    return _result(a, True, "matches the schema")


async def evaluate(a: Assertion, out: Outcome, grade: Grader | None) -> Check:
    t = a.type
    if t == "guardrail-blocked":
        return _result(a, out.guardrail_blocked, "blocked" if out.guardrail_blocked else f"not blocked ({out.status})")
    if t == "not-guardrail-blocked":
        return _result(a, not out.guardrail_blocked, "blocked" if out.guardrail_blocked else "not blocked")
    if t == "latency-ms":
        return _result(a, out.latency_ms <= float(a.value), f"{out.latency_ms:.0f} ms (limit {a.value})")
    if t == "header":
        got = out.headers.get(str(a.name).lower())
        ok = got is not None and re.search(str(a.value), got) is not None
        return _result(a, ok, f"{a.name}: {got!r}")
    if t in ("refusal", "not-refusal"):
        refused = out.guardrail_blocked or (out.ok and _REFUSAL.search(out.text) is not None)
        return _result(a, refused == (t == "refusal"), "refused" if refused else "answered")
    if not out.ok:
        return _result(a, False, f"no answer: HTTP {out.status} {out.error_code or out.error_type or ''}".rstrip())
    if t == "cost":
        if out.cost_usd is None:
            return _result(a, False, "the gateway reported no cost")
        return _result(a, out.cost_usd <= float(a.value), f"${out.cost_usd:.6f} (limit ${a.value})")
    if t == "tool-call":
        return _tool_call(a, out)
    if t in ("is-json", "json-schema"):
        return _json_check(a, out.text)
    if t in ("llm-rubric", "model-graded"):
        assert grade is not None  # the suite check makes a judge mandatory for these
        score, reason = await grade(str(a.value), out.text)
        threshold = 0.5 if a.threshold is None else a.threshold
        return _result(a, score >= threshold, f"judge: {score:.2f} (pass ≥ {threshold:g}) {reason}"[:300], score)
    return _text_check(a, out.text)
