"""Micro-benchmark of policy routing's per-request rule evaluation (docs/policy-routing.md#speed):
the group default model and the compliance decision, as gateway/handle.py calls them. Not
asserted by tests (issue 17's budget: <= 50 us per request for the rules).

    PYTHONPATH=src .venv/bin/python bench/policy_routes.py
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gatehouse.config import from_mapping
from gatehouse.gateway.exchange import Exchange
from gatehouse.policy.compliance import build_compliance
from gatehouse.policy.principal import Principal
from gatehouse.routing.policy_routes import group_defaults
from gatehouse.routing.table import Deployment, ModelEntry, ModelTable
from gatehouse.routing.virtual import Signals, build_virtual
from gatehouse.types import ChatRequest, Message, TextPart

CONFIG: dict[str, Any] = {
    "providers": {"oa": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}},
    "models": [{"name": "gpt", "deployments": [{"provider": "oa", "model": "m"}]},
               {"name": "local", "private": True, "deployments": [{"provider": "oa", "model": "m"}]}],
    "compliance": {"classes": ["public", "internal", "pii", "pci", "phi"],
                   "detectors": {"payment_card": "pci", "iban": "pci", "us_ssn": "phi", "email": "pii"},
                   "policies": {"pii": {"reroute": "local"}, "pci": {"reroute": "local"}, "phi": "deny"}},
    "routers": {
        "auto": {"default": "gpt", "rules": [
            {"keywords": ["python", "typescript", "stack trace", "compile error", "segfault"], "model": "local"},
            {"regex": r"\bdef \w+\(|\bfunction \w+\(", "model": "local"},
            {"min_prompt_tokens": 20000, "model": "local"},
            {"images": True, "model": "local"},
            {"groups": ["health"], "user_agent": "(?i)claude-cli", "model": "local"}]},
        "thrifty": {"strategy": "cheapest", "candidates": ["gpt", "local"]},
    },
    "groups": {"shop": {"models": ["*"], "default_model": "gpt"}, "health": {"models": ["*"], "data_class": "pii"}},
}
SHORT = "Summarise the attached meeting notes in three bullet points, please."
LONG = (("The customer asked about order 12345 shipped on 2024-06-15 to Berlin. They want to know why "
         "the package is late, and whether a refund is possible; please draft a polite reply. ") * 23)[:4096]


def per_call(fn: Callable[[], object], n: int = 20000) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def chat(text: str) -> ChatRequest:
    return ChatRequest(model="gpt", messages=[Message("user", [TextPart(text)])])


def main() -> None:
    cfg = from_mapping(CONFIG)
    # one deployment each (compliance decides from the deployments' classes)
    entries = {m.name: ModelEntry(m.name, (Deployment("oa", None, "m"),)) for m in cfg.models}  # type: ignore[arg-type]
    comp = build_compliance(cfg, entries)
    assert comp is not None
    table = ModelTable(entries, {}, group_defaults(cfg))
    shop, health = Principal("a", "shop", "k", None), Principal("b", "health", "k", None)
    ex = Exchange("r", "chat", "openai")
    gpt, local = entries["gpt"], entries["local"]
    short, long, card = chat(SHORT), chat(LONG), chat(LONG[:2000] + " card 4111 1111 1111 1111 " + LONG[2000:])
    virtual = build_virtual(cfg)
    auto, thrifty = virtual["auto"], virtual["thrifty"]
    ua = {"user-agent": "curl/8"}
    print(f"auto, 5 rules, 70-char prompt, none match:    "
          f"{per_call(lambda: auto.pick(Signals(short, 20), None, shop, ua)):6.2f} us")
    print(f"auto, 5 rules, 4 KB prompt, none match:       "
          f"{per_call(lambda: auto.pick(Signals(long, 1000), None, shop, ua)):6.2f} us")
    print(f"cheapest of 2 candidates:                      "
          f"{per_call(lambda: thrifty.pick(Signals(short, 20), None, shop, ua)):6.2f} us")
    print(f"default model (no model in the request):      {per_call(lambda: table.requested('', shop)):6.2f} us")
    print(f"compliance, private model (not looked at):    {per_call(lambda: comp.decide(ex, local, short, shop, {})):6.2f} us")
    print(f"compliance, group class + header, 70-char scan:"
          f"{per_call(lambda: comp.decide(ex, gpt, short, health, {'x-gatehouse-data-class': 'pci'})):6.2f} us")
    print(f"compliance, 70-char clean prompt (4 detectors): {per_call(lambda: comp.decide(ex, gpt, short, shop, {})):6.2f} us")
    print(f"compliance, 4 KB clean prompt (4 detectors):    {per_call(lambda: comp.decide(ex, gpt, long, shop, {})):6.2f} us")
    print(f"compliance, 4 KB prompt with a card (reroute):  {per_call(lambda: comp.decide(ex, gpt, card, shop, {})):6.2f} us")


if __name__ == "__main__":
    main()
