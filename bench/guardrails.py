"""Micro-benchmark of the guardrail detectors (docs/guardrails.md#speed). Not asserted by tests.

    PYTHONPATH=src .venv/bin/python bench/guardrails.py
"""
from __future__ import annotations

import time
from typing import Callable

from gatehouse.policy.guardrails.config import GuardCheckConfig, GuardPolicyConfig, GuardrailsConfig
from gatehouse.policy.guardrails.engine import Plan, compile_policies
from gatehouse.policy.guardrails.output import StreamFilter
from gatehouse.policy.guardrails.step import Guard

BUILTINS = ["payment_card", "iban", "us_ssn", "email", "phone", "ip_address", "aws_access_key", "private_key",
            "jwt", "github_token", "slack_token", "high_entropy", "prompt_injection"]
PROMPT = (("The customer asked about order 12345 shipped on 2024-06-15 to Berlin. They want to know why "
           "the package is late, and whether a refund is possible; please draft a polite reply. ") * 23)[:4096]


def per_call(fn: Callable[[], object], n: int = 2000) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    checks = [GuardCheckConfig(type=t) for t in BUILTINS]  # type: ignore[arg-type]
    checks += [GuardCheckConfig(type="keywords", words=["drop table", "union select", "exploit", "bypass"]),
               GuardCheckConfig(type="regex", name="cvv", patterns=[r"(?i)cvv\s*:?\s*\d{3,4}"], max_length=16)]
    policy = compile_policies(GuardrailsConfig(policies={"p": GuardPolicyConfig(checks)}))["p"]
    plan = Plan(("p",), policy)
    dirty = PROMPT[:2000] + " card 4111 1111 1111 1111, mail bob@example.com " + PROMPT[2000:4000]
    print(f"15 checks, clean 4 KB prompt:               {per_call(lambda: plan.input.scan(PROMPT)):7.1f} us")
    print(f"15 checks, 4 KB prompt with card and e-mail: {per_call(lambda: plan.input.scan(dirty)):7.1f} us")
    words = [w + " " for w in PROMPT.split(" ")]
    for names in (["payment_card", "keywords", "cvv"], None):
        p = Plan(("p",), [c for c in policy if names is None or c.name in names])

        def relay(p: Plan = p) -> None:
            f = StreamFilter(Guard(p))
            for w in words:
                f.feed(w)

        us = per_call(relay, 50) / len(words)
        print(f"stream, {len(p.output.checks):2d} output checks, window {p.window:4d}: {us:5.1f} us per chunk")


if __name__ == "__main__":
    main()
