"""Scenario (m): the `auto` virtual model (routing/virtual.py) against the model addressed directly.

Gatehouse only: the plain gateway serves `bench-model`; a second one serves `bench-model` as a
virtual `rules` router over four models on the same mock (the rules of bench/auto_router_eval.py:
images, prompt size, ~60 code keywords, a code regex; default `cheap`). The bench prompt matches
no rule, so every request pays for every rule before the default: the worst case of the rules.
Interleaved in the same rounds: throughput at c=64 and added latency at c=1. A third gateway adds
the semantic signal to the same rules (an embeddings model on the mock's /v1/embeddings): the bench
prompt matches no rule, so every request makes one embedding call before its route is known; its
added latency at c=1 is what an embedding-based decision costs with an upstream that answers at
once (a real embedding model adds its own inference time on top). Then, in this
process, the router's accuracy and decision cost over the labelled sets (bench/data/
auto_routes.jsonl, written with the rules; auto_routes_heldout.jsonl, written without running
them against the rules), and the rules' cost on the bench prompt itself.
"""
from __future__ import annotations

import time

from . import stats
from .rounds import PROMPT, Ctx, added, available, interleaved, openai_body, say, summaries, wrk_runner
from .scenarios import CONCURRENCY, LAT_METRICS, _second_gateway, _throughput

RULES_BUDGET_US = 50.0  # issue 17: rule evaluation costs at most this per request


def auto_router() -> dict:
    """The router config of bench/auto_router_eval.py (one source for the rules; bench/ is on
    sys.path: bench/run.py puts it there)."""
    from auto_router_eval import CONFIG

    return dict(CONFIG["routers"]["auto"])


def _rules_cost_us(n: int = 20000) -> float:
    """The rules' decision on the bench prompt (no rule matches: every rule is evaluated), in-process."""
    from auto_router_eval import CONFIG

    from gatehouse.config import from_mapping
    from gatehouse.policy.principal import Principal
    from gatehouse.routing.virtual import Signals, build_virtual
    from gatehouse.types import ChatRequest, Message, TextPart

    auto = build_virtual(from_mapping(CONFIG))["auto"]
    req = ChatRequest(model="auto", messages=[Message("user", [TextPart(PROMPT)])])
    who = Principal("bench", None, "k", None)
    assert auto.pick(Signals(req, 20), None, who, {}) == ("cheap", "default")
    t = time.perf_counter()
    for _ in range(n):
        auto.pick(Signals(req, 20), None, who, {})
    return (time.perf_counter() - t) / n * 1e6


def _evaluation() -> dict:
    from auto_router_eval import DATA, HELDOUT, evaluate

    return {"labelled": evaluate(DATA), "heldout": evaluate(HELDOUT), "rules_us_bench_prompt": _rules_cost_us()}


SEMANTIC = {"model": "bench-embed", "min_similarity": 0.3, "timeout_seconds": 1.0,
            "routes": {"coder": ["write a python function that parses a log file", "fix this stack trace"],
                       "long": ["summarise this long contract", "what does this report say about revenue"]}}


def _semantic_latency(ctx: Ctx) -> dict | None:
    """Added latency at c=1 of the rules router with the semantic signal (one embedding call per
    request: the bench prompt matches no rule), interleaved with the model addressed directly."""
    out: dict = {}
    with _second_gateway(ctx, out, "gatehouse-semantic", "the gateway did not start with the semantic router",
                         auto={**auto_router(), "semantic": SEMANTIC}) as pair:
        if pair is None:
            return None
        plain, gh = pair
        path, body = "/v1/chat/completions", openai_body()
        lat = interleaved(ctx, available(ctx, [ctx.mock, plain, gh], path, body, False, []),
                          wrk_runner(ctx, path, body, 1), "m")
        res = {"summary": summaries(lat, LAT_METRICS),
               "added": added(lat, {k: v for k, v in LAT_METRICS.items() if k != "rps"})}
    a = ((res["added"].get("gatehouse-semantic") or {}).get("p50_ms"))
    d = ((res["added"].get("gatehouse") or {}).get("p50_ms"))
    if a is not None and d is not None:
        say(f"  semantic signal: added p50 at c=1 {a['median']:.3f} ms vs {d['median']:.3f} ms for the model "
            "directly (one embedding call each)")
    return res


def scenario_auto(ctx: Ctx) -> dict:
    say(f"(m) auto routing: a virtual `auto` model (keyword/regex rules) vs the model directly, c={CONCURRENCY} and c=1")
    title = "Virtual `auto` model (rules) vs the model addressed directly"
    out: dict = {"id": "m", "title": title}
    router = auto_router()
    with _second_gateway(ctx, out, "gatehouse-auto", "the gateway did not start with the auto router",
                         auto=router) as pair:
        if pair is not None:
            plain, gh = pair
            path, body = "/v1/chat/completions", openai_body()
            res = _throughput(ctx, "m", title, path, body, False, [ctx.mock, plain, gh], sample_rss=False)
            res["params"]["router"] = "bench/auto_router_eval.py's rules; the bench prompt matches none"
            res["auto_closed_loop_ratio"] = stats.ratio(stats.median(res["summary"][gh.name]["rps"]),
                                                        stats.median(res["summary"][plain.name]["rps"]))
            lat = interleaved(ctx, available(ctx, [ctx.mock, plain, gh], path, body, False, []),
                              wrk_runner(ctx, path, body, 1), "m")
            res["latency_c1"] = {"summary": summaries(lat, LAT_METRICS),
                                 "added": added(lat, {k: v for k, v in LAT_METRICS.items() if k != "rps"})}
            out = res
            say(f"  auto / direct at c={CONCURRENCY}: {res['auto_closed_loop_ratio'] or 0:.3f} (closed loop)")
    semantic = _semantic_latency(ctx)
    if semantic is not None:
        out["semantic_latency_c1"] = semantic
    out["evaluation"] = ev = _evaluation()
    for key in ("labelled", "heldout"):
        e = ev[key]
        say(f"  {e['set']}: accuracy {e['accuracy']:.1%} over {e['prompts']} prompts; decision median "
            f"{e['decision_us_short_median']:.1f} us (prompts under 1 KB)")
    say(f"  rules on the bench prompt (none match): {ev['rules_us_bench_prompt']:.1f} us per request")
    return out


def rows_auto(m: dict) -> list[list[str]]:
    """(m): the report's rows (bench/harness/report.py, which imports this module)."""
    from .report import fmt, met

    out: list[list[str]] = []
    if "skipped" in m:
        out.append(["(m) auto ÷ direct", "—", m["skipped"], "—", "—", "—", "—"])
    else:
        r = m.get("auto_closed_loop_ratio")
        out.append(["(m) virtual `auto` (rules) ÷ model directly: closed loop c=64", "—",
                    "n/a" if r is None else f"{r:.3f}", "—", "—", "—", "—"])
        for name, what in (("gatehouse", "model directly"), ("gatehouse-auto", "`auto`")):
            a = (((m.get("latency_c1") or {}).get("added") or {}).get(name) or {}).get("p50_ms")
            out.append([f"(m) {what}: added latency p50, c=1, ms", "—", fmt(a), "—", "—", "—", "—"])
    sem = ((m.get("semantic_latency_c1") or {}).get("added") or {}).get("gatehouse-semantic") or {}
    if sem:
        out.append(["(m) `auto` + semantic signal (one embedding call): added latency p50, c=1, ms", "—",
                    fmt(sem.get("p50_ms")), "—", "—", "—", "—"])
    ev = m.get("evaluation") or {}
    us = ev.get("rules_us_bench_prompt")
    out.append(["(m) rules evaluated per request (no rule matches), µs", "—", "n/a" if us is None else f"{us:.1f}",
                "—", "—", f"≤ {RULES_BUDGET_US:g}", met(None if us is None else us <= RULES_BUDGET_US)])
    for key, what in (("labelled", "labelled set (written with the rules)"), ("heldout", "held-out set")):
        e = ev.get(key)
        if e:
            out.append([f"(m) router accuracy, {what}, {e['prompts']} prompts", "—", f"{e['accuracy']:.1%}",
                        "—", "—", "—", "—"])
    return out

