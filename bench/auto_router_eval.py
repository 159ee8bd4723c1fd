"""Accuracy and per-decision cost of an `auto` rules router (routing/virtual.py) on two labelled
sets over 4 routes (coder, cheap, long, vision; long documents are built from `repeat` x
`times`, images are a tiny PNG). Not asserted by tests; `make bench` scenario (m) reports it.

- bench/data/auto_routes.jsonl: 200 prompts written together with the rules below, so its
  accuracy is a check of the rules' mechanics, not a claim about real traffic.
- bench/data/auto_routes_heldout.jsonl: 40 prompts written afterwards, without running them
  against the rules or changing either to fit the other (docs/policy-routing.md#virtual-models).

    PYTHONPATH=src .venv/bin/python bench/auto_router_eval.py
"""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from gatehouse.config import from_mapping
from gatehouse.metering.tokens import estimate_request
from gatehouse.policy.principal import Principal
from gatehouse.routing.virtual import Signals, build_virtual
from gatehouse.types import ChatRequest, ImagePart, Message, TextPart

DATA = Path(__file__).parent / "data" / "auto_routes.jsonl"
HELDOUT = Path(__file__).parent / "data" / "auto_routes_heldout.jsonl"
PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
CODE_WORDS = ["python", "javascript", "typescript", "java", "rust", "golang", "sql", "bash", "docker",
              "kubernetes", "react", "css", "pytest", "unit test", "stack trace", "traceback", "compile", "segfault",
              "function", "class", "regex", "git rebase", "refactor", "debug", "async", "deadlock", "recursion",
              "dockerfile", "terraform", "github actions", "pandas", "virtualenv", "mutex", "race condition",
              "linked list", "binary search", "quicksort", "lru cache", "pydantic", "json schema", "rest api",
              "endpoint", "loop", "exception", "error:", "closures", "generics", "generic", "memory leak", "leaks memory",
              "list comprehension", "tuple", "yield", "useeffect", "flexbox", "npm", "gcc", "tokio", "borrow"]
CONFIG: dict[str, Any] = {
    "providers": {"oa": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}},
    "models": [{"name": n, "deployments": [{"provider": "oa", "model": n}]} for n in ("cheap", "coder", "long", "vision")],
    "routers": {"auto": {"default": "cheap", "rules": [
        {"images": True, "model": "vision"},
        {"min_prompt_tokens": 20000, "model": "long"},
        {"keywords": CODE_WORDS, "model": "coder"},
        {"regex": r"\bdef \w+\(|\bfunction \w+\(|[{};]\s*$|\w+\(\)", "model": "coder"},
    ]}},
}


def request(row: dict[str, Any]) -> ChatRequest:
    text = row["prompt"] + row.get("repeat", "") * row.get("times", 0)
    parts: list[Any] = [TextPart(text)]
    if row.get("image"):
        parts.append(ImagePart(url=PNG))
    return ChatRequest(model="auto", messages=[Message("user", parts)])


def evaluate(path: Path = DATA) -> dict[str, Any]:
    """The rules router over one labelled set: accuracy (overall, per route), the decision's cost
    (the prompt estimate + the rules, in-process) and the misses."""
    auto = build_virtual(from_mapping(CONFIG))["auto"]
    who = Principal("bench", None, "k", None)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    reqs = [(row["route"], request(row)) for row in rows]
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    wrong: list[dict[str, str]] = []
    times: list[float] = []
    for expected, req in reqs:
        t = time.perf_counter()
        est = estimate_request(req)
        got, _ = auto.pick(Signals(req, est), None, who, {})
        times.append((time.perf_counter() - t) * 1e6)
        total[expected] += 1
        if got == expected:
            right[expected] += 1
        else:
            wrong.append({"expected": expected, "got": got,
                          "prompt": req.messages[0].content[0].text[:70]})  # type: ignore[union-attr]
    short = sorted(t for (exp, _), t in zip(reqs, times) if exp != "long")
    long = sorted(t for (exp, _), t in zip(reqs, times) if exp == "long")
    n = sum(total.values())
    return {"set": path.name, "prompts": n, "accuracy": sum(right.values()) / n,
            "per_route": {r: [right[r], total[r]] for r in sorted(total)},
            "decision_us_short_median": short[len(short) // 2], "decision_us_short_p99": short[int(len(short) * 0.99)],
            "decision_us_long_median": long[len(long) // 2] if long else None, "misses": wrong}


def main() -> None:
    for path in (DATA, HELDOUT):
        r = evaluate(path)
        print(f"{r['set']}: {r['prompts']} prompts, accuracy {r['accuracy']:.1%}")
        for route, (ok, of) in r["per_route"].items():
            print(f"  {route:7} {ok:3}/{of}")
        print(f"  decision (prompt estimate + rules), prompts under 1 KB: median {r['decision_us_short_median']:.1f} us, "
              f"p99 {r['decision_us_short_p99']:.1f} us; long documents (decided by size first) median "
              f"{r['decision_us_long_median'] or 0:.1f} us")
        for miss in r["misses"]:
            print(f"  miss: {miss['expected']} -> {miss['got']}: {miss['prompt']!r}")


if __name__ == "__main__":
    main()
