"""The audit of one request's guardrails, made cheap: built once per outcome, counted in bulk.

A request's outcome is small: which stages were scanned, and the few verdicts that are not
"pass" (matches, guard-model verdicts). Every request of a plan with the same outcome has the
same full audit (each check: pass, match or skipped, with its action, category and policy),
so the full audit is expanded once per (plan, outcome) into an `Outcome`: its rows, and the
rows as JSON for the access log (embedded as is, not encoded again per request). Metrics count
outcomes per group in a plain dict and add them to the Prometheus counter when it is read
(`VerdictCounts`), instead of 19 labelled increments per request.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import msgspec
from prometheus_client import Counter

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

    from gatehouse.policy.guardrails.engine import Plan

# (verdict, action, category, policy); verdict: pass | match | skipped
Verdict = tuple[str, str, str, str]
INPUT, OUTPUT = 1, 2  # the stages a Guard scanned (bits)
_STRENGTH = {"flag": 1, "redact": 2, "reroute": 3, "block": 4}  # which action a trace names when several matched
_OUTCOMES_PER_PLAN = 256  # distinct outcomes kept per plan (more are expanded per request)


class Outcome:
    """One full audit: rows (check, stage, verdict, action, category, policy) and, for the
    access log, their JSON: every row (`json`) or the rows that did not pass (`findings`)."""

    __slots__ = ("rows", "json", "findings", "span_action", "span_matches")

    def __init__(self, rows: tuple[tuple[str, str, str, str, str, str], ...]):
        self.rows = rows
        self.json = msgspec.Raw(msgspec.json.encode(self.audit()))
        self.findings = msgspec.Raw(msgspec.json.encode([r for r in self.audit() if r["verdict"] != "pass"]))
        # The trace's attributes (observability/otlp_items.py): the strongest action of the checks
        # that matched ("pass" when checks ran and none matched; None: none ran), and the matches
        # as "check:stage:action", comma-separated (None: none). Names from the config, never text.
        matched = [(c, s, a) for c, s, v, a, _, _ in rows if v == "match"]
        ran = any(v != "skipped" for _, _, v, _, _, _ in rows)
        self.span_action = max((a for _, _, a in matched), key=lambda a: _STRENGTH.get(a, 0)) if matched else \
            "pass" if ran else None
        self.span_matches = ",".join(f"{c}:{s}:{a}" for c, s, a in matched) or None

    def audit(self) -> list[dict[str, str]]:
        return [{"check": c, "stage": s, "verdict": v, "action": a, "category": cat, "policy": pol}
                for c, s, v, a, cat, pol in self.rows]


def outcome(plan: Plan, scanned: int, explicit: dict[tuple[str, str], Verdict]) -> Outcome:
    """The full audit of a request: every check of the plan, per stage, with its explicit verdict
    (a match, a guard model's verdict), else "pass" where its stage was scanned, else "skipped"."""
    key = (scanned, tuple(explicit.items())) if explicit else scanned
    cache = plan.outcomes
    found = cache.get(key)
    if found is None:
        found = Outcome(_expand(plan, scanned, explicit))
        if len(cache) < _OUTCOMES_PER_PLAN:
            cache[key] = found
    return found


def _expand(plan: Plan, scanned: int, explicit: dict[tuple[str, str], Verdict]) -> tuple[Any, ...]:
    rows: dict[tuple[str, str], Verdict] = {}
    for stage, bit, checks, guards in (("input", INPUT, plan.input, plan.guard_input),
                                       ("output", OUTPUT, plan.output, plan.guard_output)):
        default = "pass" if scanned & bit else "skipped"
        for c in checks:  # a name twice in a stage (two policies): one row, as a dict keyed by it
            key = (c.name, stage)
            if key not in rows:
                rows[key] = explicit.get(key) or (default, c.action, c.category, c.policy)
        for g in guards:
            key = (g.name, stage)
            if key not in rows:
                rows[key] = explicit.get(key) or ("skipped", g.action, "guard_model", g.policy)
    for key, v in explicit.items():  # (a verdict of a check outside the plan: kept, never dropped)
        rows.setdefault(key, v)
    return tuple((name, stage, *v) for (name, stage), v in rows.items())


class VerdictCounts:
    """gatehouse_guardrail_verdicts_total, counted per outcome and group: `count` is one dict
    update per request; the rows are added to the labelled counter when the registry is read
    (a scrape), which then yields the counter as it always did. Both run on the event loop
    (the /metrics route renders the registry there)."""

    def __init__(self, registry: CollectorRegistry):
        self.counter = Counter("gatehouse_guardrail_verdicts", "Guardrail checks run, by verdict and action.",
                               ["guardrail", "policy", "stage", "verdict", "action", "group"], registry=None)
        self._pending: dict[tuple[Outcome, str], int] = {}
        registry.register(self)  # a collector: describe() and collect()

    def count(self, outcome: Outcome, group: str) -> None:
        key = (outcome, group)
        pending = self._pending
        pending[key] = pending.get(key, 0) + 1
        if len(pending) > 10_000:  # (many distinct outcomes: do not hold them all until a scrape)
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        labels = self.counter.labels
        for (out, group), n in pending.items():
            for check, stage, verdict, action, _category, policy in out.rows:
                labels(check, policy, stage, verdict, action, group).inc(n)

    def describe(self) -> Iterable[Metric]:
        return self.counter.describe()

    def collect(self) -> Iterator[Metric]:
        self.flush()
        yield from self.counter.collect()
