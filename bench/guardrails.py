"""Micro-benchmark of the guardrail detectors (docs/guardrails.md#speed). Not asserted by tests.

    PYTHONPATH=src .venv/bin/python bench/guardrails.py
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import yaml

from gatehouse.policy.guardrails.config import GuardCheckConfig, GuardPolicyConfig, GuardrailsConfig
from gatehouse.policy.guardrails.engine import Plan, compile_policies
from gatehouse.policy.guardrails.output import StreamFilter
from gatehouse.policy.guardrails.step import Guard

BUILTINS = ["payment_card", "iban", "us_ssn", "email", "phone", "ip_address", "aws_access_key", "private_key",
            "jwt", "github_token", "slack_token", "high_entropy", "prompt_injection"]
PROMPT = (("The customer asked about order 12345 shipped on 2024-06-15 to Berlin. They want to know why "
           "the package is late, and whether a refund is possible; please draft a polite reply. ") * 23)[:4096]


def per_call(fn: Callable[[], object], n: int = 2000, repeat: int = 5) -> float:
    """Microseconds per call: the best of `repeat` runs (other work on the cores only adds)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(n // repeat or 1):
            fn()
        best = min(best, (time.perf_counter() - t) / (n // repeat or 1))
    return best * 1e6


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "guardrails-ecommerce.yaml"
BENCH_PROMPT = "Summarise the benefits of a private LLM gateway in two sentences."  # bench/harness/rounds.py
MOCK_WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod "  # bench/mock_upstream.c


def per_request() -> None:
    """The guardrail work of one `make bench` (h) request with the e-commerce policy (the real
    step, call and relay check; no sockets): the input checks at admission, the answer check on
    the forwarded 512-character answer, and the audit at settle (metrics + access-log JSON)."""
    from prometheus_client import CollectorRegistry

    from gatehouse.api.openai import ChatCompletions
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.policy.guardrails.audit import VerdictCounts
    from gatehouse.policy.guardrails.output import guard_forwarded
    from gatehouse.policy.guardrails.step import GuardrailStep

    cfg = msgspec.convert(yaml.safe_load(EXAMPLE.read_text())["guardrails"], GuardrailsConfig)
    counts = VerdictCounts(CollectorRegistry())

    def on_verdicts(guard: Guard, ex: Exchange) -> None:
        out = guard.finish()
        counts.count(out, "bench")
        ex.guard_audit = out.json

    step = GuardrailStep(compile_policies(cfg), {}, lambda group: ["ecommerce"], on_verdicts)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": BENCH_PROMPT}],
                       "max_tokens": 128}).encode()
    text = (MOCK_WORDS * 8)[:512]
    answer = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 12, "completion_tokens": 128, "total_tokens": 140}}).encode()
    endpoint = ChatCompletions()

    def request(guarded: bool) -> Any:
        call = endpoint.parse(body, {})
        call.public_model = "m"
        ex = Exchange("r", "chat", "openai")
        ex.model, ex.subject = "m", call.canonical()

        async def run() -> None:
            if guarded:
                await step.admit(ex)
                assert ex.guard is not None
                assert await guard_forwarded(ex.guard, call, answer, "r") is answer
                await step.settle(ex)
        try:  # nothing in it waits: one step runs it to the end, without an event loop's own cost
            run().send(None)
        except StopIteration:
            pass
        else:
            raise AssertionError("the guardrail step waited")

    off, on = per_call(lambda: request(False), 5000), per_call(lambda: request(True), 5000)
    print(f"per bench (h) request, e-commerce policy ({len(step.plan(None, 'm').input.checks)} input, "
          f"{len(step.plan(None, 'm').output.checks)} output checks): {on - off:5.1f} us "
          f"(beside {off:.1f} us to parse the body and build the canonical request)")


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
    per_request()


if __name__ == "__main__":
    main()
