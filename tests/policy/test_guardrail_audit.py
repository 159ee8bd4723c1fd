"""The audit built once per outcome (policy/guardrails/audit.py): each request still gets its
own full audit, and the verdict counter adds up exactly what each request decided."""
from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry

from gatehouse.policy.guardrails.audit import VerdictCounts
from gatehouse.policy.guardrails.config import GuardCheckConfig, GuardPolicyConfig, GuardrailsConfig
from gatehouse.policy.guardrails.engine import Plan, compile_policies
from gatehouse.policy.guardrails.step import Guard, GuardrailBlocked

CHECKS = [
    GuardCheckConfig(type="payment_card", action="redact"),
    GuardCheckConfig(type="keywords", name="sqli", words=["drop table"], action="block", stage="input"),
    GuardCheckConfig(type="email", action="flag", stage="output"),
]


def plan() -> Plan:
    return Plan(("p",), compile_policies(GuardrailsConfig(policies={"p": GuardPolicyConfig(CHECKS)}))["p"])


def rows(guard: Guard) -> dict[tuple[str, str], str]:
    return {(r["check"], r["stage"]): r["verdict"] for r in guard.audit()}


def test_each_request_gets_its_own_audit_from_a_shared_plan():
    p = plan()
    clean, card, refused, answered = Guard(p), Guard(p), Guard(p), Guard(p)
    clean.check_text("hello", p.input, "input")
    card.check_text("pay 4111 1111 1111 1111", p.input, "input")
    with pytest.raises(GuardrailBlocked):
        refused.check_text("DROP TABLE x", p.input, "input")
    answered.check_text("hello", p.input, "input")
    answered.check_text("write to a@example.com", p.output, "output")
    assert rows(clean) == {("payment_card", "input"): "pass", ("sqli", "input"): "pass",
                           ("payment_card", "output"): "skipped", ("email", "output"): "skipped"}
    assert rows(card)[("payment_card", "input")] == "match" and rows(card)[("sqli", "input")] == "pass"
    assert rows(refused)[("sqli", "input")] == "match" and rows(refused)[("payment_card", "output")] == "skipped"
    assert rows(answered)[("email", "output")] == "match" and rows(answered)[("payment_card", "output")] == "pass"
    assert rows(Guard(p)) == dict.fromkeys(rows(clean), "skipped")  # nothing ran: nothing passed
    for g in (clean, card, refused, answered):  # the access log's JSON is the same audit
        assert json.loads(bytes(g.finish().json)) == g.audit()
    again = Guard(p)
    again.check_text("hi", p.input, "input")
    assert again.finish() is clean.finish()


def test_verdict_counts_add_up_per_request_when_read():
    registry = CollectorRegistry()
    counts = VerdictCounts(registry)
    p = plan()
    for text in ("hello", "hi", "pay 4111 1111 1111 1111"):
        g = Guard(p)
        g.check_text(text, p.input, "input")
        counts.count(g.finish(), "shop")

    def value(check: str, stage: str, verdict: str) -> float | None:
        action = {"payment_card": "redact", "sqli": "block", "email": "flag"}[check]
        return registry.get_sample_value("gatehouse_guardrail_verdicts_total", {
            "guardrail": check, "policy": "p", "stage": stage, "verdict": verdict, "action": action, "group": "shop"})

    assert value("payment_card", "input", "pass") == 2
    assert value("payment_card", "input", "match") == 1
    assert value("sqli", "input", "pass") == 3
    assert value("email", "output", "skipped") == 3
    counts.count(Guard(p).finish(), "shop")  # counted after a read: added at the next one
    assert value("email", "output", "skipped") == 4 and value("sqli", "input", "skipped") == 1
