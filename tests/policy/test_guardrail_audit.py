"""The audit built once per outcome (policy/guardrails/audit.py): each request still gets its
own full audit, and the verdict counter adds up exactly what each request decided; with
`audit_log: findings` the access log lists only the checks that did not pass."""
from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gatehouse.config import ConfigError, from_mapping
from gatehouse.policy.guardrails.audit import VerdictCounts
from gatehouse.policy.guardrails.config import GuardCheckConfig, GuardPolicyConfig, GuardrailsConfig
from gatehouse.policy.guardrails.engine import Plan, compile_policies
from gatehouse.policy.guardrails.step import Guard, GuardrailBlocked
from tests.conftest import ALICE_KEY
from tests.support import Gatehouse
from tests.upstreams import openai_wire

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


def test_findings_lists_what_did_not_pass():
    p = plan()
    g = Guard(p)
    g.check_text("pay 4111 1111 1111 1111", p.input, "input")
    findings = json.loads(bytes(g.finish().findings))
    assert [(r["check"], r["stage"], r["verdict"]) for r in findings] == [
        ("payment_card", "input", "match"), ("payment_card", "output", "skipped"), ("email", "output", "skipped")]


def test_audit_log_setting_is_checked():
    base: dict[str, Any] = {"providers": {"e": {"type": "echo"}},
                            "models": [{"name": "m", "deployments": [{"provider": "e", "model": "m"}]}]}
    policies = {"p": {"checks": [{"type": "email"}]}}
    assert from_mapping({**base, "guardrails": {"policies": policies, "audit_log": "findings"}})
    with pytest.raises(ConfigError, match="audit_log"):
        from_mapping({**base, "guardrails": {"policies": policies, "audit_log": "some"}})


def test_access_log_with_findings_only(openai_upstream, tmp_path):
    cfg = {
        "providers": {"oa": {"type": "openai", "base_url": openai_upstream.url + "/v1", "api_key": openai_wire.API_KEY}},
        "models": [{"name": "chat", "deployments": [{"provider": "oa", "model": "up-chat"}]}],
        "guardrails": {"audit_log": "findings", "policies": {"p": {"checks": [
            {"type": "email", "action": "redact", "stage": "input"},
            {"type": "payment_card", "action": "redact", "stage": "input"},
            {"type": "payment_card", "name": "card-out", "action": "redact", "stage": "output"}]}}},
        "groups": {"g": {"models": ["*"], "guardrails": ["p"]}},
        "consumers": {"alice": {"group": "g", "keys": [ALICE_KEY]}},
    }
    gh = Gatehouse(cfg, tmp_path).start()
    try:
        for rid, text in (("clean-1", "hello"), ("mail-1", "write to a.b@example.com")):
            req = urllib.request.Request(gh.url + "/v1/chat/completions", json.dumps(
                {"model": "chat", "messages": [{"role": "user", "content": text}]}).encode(), method="POST",
                headers={"authorization": f"Bearer {ALICE_KEY}", "content-type": "application/json",
                         "x-request-id": rid})
            with urllib.request.urlopen(req, timeout=20) as resp:
                assert resp.status == 200
        deadline = time.monotonic() + 5
        entries: dict[str, Any] = {}
        while len(entries) < 2 and time.monotonic() < deadline:
            entries = {e["client_request_id"]: e for e in (json.loads(ln) for ln in gh.logs().splitlines()
                                                           if ln.startswith("{") and '"client_request_id":"' in ln)}
            time.sleep(0.05)
        assert entries["clean-1"]["guardrails"] == []  # every check ran and passed
        [finding] = entries["mail-1"]["guardrails"]
        assert finding == {"check": "email", "stage": "input", "verdict": "match", "action": "redact",
                           "category": "email", "policy": "p"}
        assert "a.b@example.com" not in gh.logs()
    finally:
        gh.stop()
