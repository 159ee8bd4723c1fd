"""Results: the machine description, the markdown table, and bench/README.md's latest table."""
from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path

from . import stats
from .scenario_auto import rows_auto
from .scenario_engine import rows_engine

README_START = "<!-- latest-results:start -->"
README_END = "<!-- latest-results:end -->"

TARGETS = {
    "latency_p50_ms": 0.3, "latency_p99_ms": 1.0, "throughput_rps": 2500, "throughput_vs_litellm": 25,
    "ttft_p99_ms": 1.0, "idle_mb": 80, "steady_mb": 150, "growth_mb": 2.0,
    "translation_rps": 1500, "distributed_rps": 1500,
    "responses_vs_translation": 0.9,  # (g) within 10% of (e)
    "guardrails_vs_plain": 0.9,       # (h) within 10% of the same gateway without guardrails
    "workers_vs_one": 1.7,            # (i) serve --workers 2 on this 2-core machine
    "cache_vs_plain": 2.0,            # (j) in-process hits at least 2x uncached at c=64
    "cache_hit_added_ms": 0.2,        # (j) a hit answers within 0.2 ms added at c=1
    "tracing_vs_off": 0.9,            # (k) every request traced costs at most 10% (issue 20)
    "routing_vs_single": 0.95,        # (l) three deployments within 5% of one (issue 16)
}


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    distro = ""
    try:
        distro = next(ln.split("=", 1)[1].strip().strip('"') for ln in open("/etc/os-release")
                      if ln.startswith("PRETTY_NAME="))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "os": distro, "python": platform.python_version()}


def git_rev(project: Path) -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(project), *args], capture_output=True, text=True)
        return out.stdout.strip()
    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    return rev + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def command_line() -> str:
    args = sys.argv[1:]
    if os.environ.get("MAKELEVEL"):
        return "make bench" + (f" BENCH_ARGS={shlex.quote(shlex.join(args))}" if args else "")
    return shlex.join(["python", "bench/run.py", *args])


# ---- formatting ------------------------------------------------------------------------------

def fmt(s: dict | None, digits: int = 2, scale: float = 1.0, thousands: bool = False) -> str:
    if s is None:
        return "n/a"
    def one(v):
        v *= scale
        return f"{v:,.0f}" if thousands else f"{v:.{digits}f}"
    if s.get("n", 1) <= 1 or s["min"] == s["max"]:
        return one(s["median"])
    return f"{one(s['median'])} ({one(s['min'])}–{one(s['max'])})"


def fmt_ratio(r: float | None, suffix: str = "×") -> str:
    return "n/a" if r is None else f"{r:,.1f}{suffix}"


def met(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**no**")


def _get(d: dict, *path):
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def rows(results: dict) -> list[list[str]]:
    """One table row per metric, scenarios in order (a)-(h)."""
    out: list[list[str]] = []
    e = next((s for s in results["scenarios"] if s.get("id") == "e" and "error" not in s), None)
    e_rps = stats.median((_get(e, "best", "gatehouse") or {}).get("rps")) if e else None
    for s in sorted(results["scenarios"], key=lambda s: s["id"]):
        if s.get("id") == "g" and e_rps:
            s = {**s, "translation_rps": e_rps}
        if "error" in s:
            out.append([f"({s['id']}) scenario failed", "—", s["error"][:200].replace("|", "/"), "—", "—", "—", "—"])
            continue
        out += ROWS[s["id"]](s)
    return out


def _added_row(label: str, s: dict, key: str, limit: float | None, digits: int = 3) -> list[str]:
    gh, ll = _get(s, "added", "gatehouse", key), _get(s, "added", "litellm", key)
    has_ll = "litellm" in s.get("summary", {})
    return [label, fmt(_get(s, "summary", "direct", key), digits),
            fmt(gh, digits) if "gatehouse" in s.get("summary", {}) else "not run",
            fmt(ll, 2) if has_ll else "—",
            fmt_ratio(stats.ratio(stats.median(ll), stats.median(gh))) if has_ll else "—",
            "—" if limit is None else f"≤ {limit:g}",
            met(None if gh is None or limit is None else gh["median"] <= limit)]


def rows_latency(a: dict) -> list[list[str]]:
    return [_added_row(f"(a) added latency {pct}, c=1, ms", a, f"{pct}_ms", TARGETS[f"latency_{pct}_ms"])
            for pct in ("p50", "p99")]


def rows_throughput(s: dict) -> list[list[str]]:
    sid = s["id"]
    name, label, limit_key = {
        "b": ("(b) throughput", "(b) throughput, c=64, 0 errors, p99 < 50 ms, req/s", "throughput_rps"),
        "e": ("(e) translation", "(e) translation (Anthropic client, OpenAI upstream), c=64, 0 errors, "
              "p99 < 50 ms, req/s", "translation_rps"),
        "f": ("(f) distributed", "(f) distributed (Redis limits + Postgres ledger), c=64, 0 errors, "
              "p99 < 50 ms, req/s", "distributed_rps"),
        "g": ("(g) Responses", "(g) Responses client over an OpenAI chat upstream, c=64, 0 errors, "
              "p99 < 50 ms, req/s", "translation_rps"),
    }[sid]
    target = f"≥ {TARGETS[limit_key]:,}"
    e_rps = s.get("translation_rps")  # (g): set by rows() from scenario (e) of the same run
    if sid == "g" and e_rps:
        target = f"≥ {TARGETS['responses_vs_translation']:g} × (e) = {TARGETS['responses_vs_translation'] * e_rps:,.0f}"
    if "skipped" in s:
        return [[label, "—", s["skipped"], "—", "—", target, "—"]]
    gh_name = "gatehouse-distributed" if sid == "f" else "gatehouse"
    gh, ll = _get(s, "best", gh_name), _get(s, "best", "litellm")
    gh_rps = (gh or {}).get("rps")
    ll_rps = None if ll is None else (ll.get("rps") or ll.get("closed_loop_rps"))
    ratio = stats.ratio(stats.median(gh_rps), stats.median(ll_rps))
    floor = TARGETS["responses_vs_translation"] * e_rps if sid == "g" and e_rps else TARGETS[limit_key]
    ok = None if gh is None else (gh_rps is not None and gh_rps["median"] >= floor)
    if sid == "b":
        target += f" and ≥ {TARGETS['throughput_vs_litellm']}× LiteLLM"
        if ok and ll is not None:
            ok = ratio is not None and ratio >= TARGETS["throughput_vs_litellm"]
    if gh is None:
        gh_txt = "not available yet" if any(n.startswith(f"{gh_name}: not available") for n in s.get("notes", [])) else "not run"
    else:
        gh_txt = fmt(gh_rps, thousands=True) if gh_rps else "p99 < 50 ms not reached"
        if gh.get("paced"):
            gh_txt += " (paced)"
        if gh.get("mock_bound"):
            gh_txt += " ⚠ mock-bound"
    ll_txt = "—" if ll is None else fmt(ll_rps, thousands=True) + (" (closed loop)" if ll.get("rps") is None else "")
    rows = [[label, fmt(_get(s, "summary", "direct", "rps"), thousands=True), gh_txt, ll_txt,
             fmt_ratio(ratio) if ll is not None else "—", target, met(ok)],
            [f"{name}: p99 at that load, ms", fmt(_get(s, "summary", "direct", "p99_ms")),
             fmt(_p99_of_best(gh, _get(s, "summary", gh_name, "p99_ms"))) if gh else "—",
             fmt(_get(s, "summary", "litellm", "p99_ms"), 1) if ll is not None else "—", "—", "< 50", "—"]]
    if gh is not None and (gh.get("paced") or ll is not None):
        # the same closed loop for both, no p99 limit: the plain capacity comparison
        gc, lc = gh.get("closed_loop_rps"), (ll or {}).get("closed_loop_rps")
        rows.append([f"{name}: closed loop c=64, no p99 limit, req/s", "—", fmt(gc, thousands=True),
                     fmt(lc, thousands=True) if ll is not None else "—",
                     fmt_ratio(stats.ratio(stats.median(gc), stats.median(lc))) if ll is not None else "—",
                     "—", "—"])
    return rows


def rows_streaming(c: dict) -> list[list[str]]:
    n = c["params"]["streams"]
    out = [_added_row(f"(c) added TTFT {pct}, {n} streams, ms", c, f"ttft_{pct}_ms",
                      TARGETS["ttft_p99_ms"] if pct == "p99" else None) for pct in ("p50", "p99")]
    out += [_added_row(f"(c) added inter-chunk gap {what}, {n} streams, ms", c, f"gap_{what}_ms", None)
            for what in ("mean", "p99")]
    st = c.get("stalled_streams", {})
    out.append([f"(c) stalled or incomplete streams (gap > {c['params']['stall_ms']} ms), all rounds",
                str(st.get("direct", "n/a")), str(st.get("gatehouse", "not run")), str(st.get("litellm", "—")),
                "—", "0", met(None if "gatehouse" not in st else st["gatehouse"] == 0)])
    return out


def rows_memory(d: dict) -> list[list[str]]:
    gh, ll = _get(d, "targets", "gatehouse"), _get(d, "targets", "litellm")
    out = []
    for key, label, limit in (("idle_kb", "RSS idle", TARGETS["idle_mb"]),
                              ("steady_kb", "RSS at steady load (max)", TARGETS["steady_mb"]),
                              ("growth", f"RSS growth over a {d['params']['soak_s']:g} s soak", TARGETS["growth_mb"]),
                              ("after_kb", "RSS after load", None)):
        def val(e, key=key):
            if e is None:
                return None
            return _get(e, "soak", "growth_kb") if key == "growth" else e.get(key)
        g, lv = val(gh), val(ll)
        out.append([f"(d) {label}, MB", "—", _mbs(g) if gh else "not run", _mbs(lv) if ll is not None else "—",
                    fmt_ratio(stats.ratio(lv, g)) if key != "growth" and ll is not None else "—",
                    "—" if limit is None else f"≤ {limit:g}",
                    met(None if g is None or limit is None else g / 1024 <= limit)])
    return out


def rows_guardrails(h: dict) -> list[list[str]]:
    """(h): the same gateway with and without the e-commerce policy, and their ratio."""
    limit = TARGETS["guardrails_vs_plain"]
    label = "(h) guardrails (e-commerce policy) on ÷ off, c=64, 0 errors, p99 < 50 ms"
    if "skipped" in h:
        return [[label, "—", h["skipped"], "—", "—", f"≥ {limit:g}", "—"]]
    out = []
    for name, what in (("gatehouse", "off"), ("gatehouse-guardrails", "on")):
        e = _get(h, "best", name) or {}
        txt = fmt(e.get("rps"), thousands=True) if e.get("rps") else "p99 < 50 ms not reached"
        out.append([f"(h) guardrails {what}: throughput, req/s", fmt(_get(h, "summary", "direct", "rps"), thousands=True),
                    txt + (" (paced)" if e.get("paced") else ""), "—", "—", "—", "—"])
    r = h.get("guardrails_ratio")
    out.append([label, "—", "n/a" if r is None else f"{r:.3f}", "—", "—", f"≥ {limit:g}",
                met(None if r is None else r >= limit)])
    c = h.get("guardrails_closed_loop_ratio")
    out.append(["(h) guardrails on ÷ off: closed loop c=64, no p99 limit", "—", "n/a" if c is None else f"{c:.3f}",
                "—", "—", "—", "—"])
    return out


def rows_workers(i: dict) -> list[list[str]]:
    """(i): two worker processes against one, closed loop at c=64."""
    limit = TARGETS["workers_vs_one"]
    label = "(i) serve --workers 2 ÷ one worker: closed loop c=64 (wrk and the mock share core 1)"
    if "skipped" in i:
        return [[label, "—", i["skipped"], "—", "—", f"≥ {limit:g}", "—"]]
    out = []
    for name, what in (("gatehouse", "1 worker (core 0)"), ("gatehouse-workers", "2 workers (cores 0-1)")):
        out.append([f"(i) {what}: closed-loop throughput, req/s", fmt(_get(i, "summary", "direct", "rps"), thousands=True),
                    fmt(_get(i, "summary", name, "rps"), thousands=True), "—", "—", "—", "—"])
    r = i.get("workers_ratio")
    out.append([label, "—", "n/a" if r is None else f"{r:.3f}", "—", "—", f"≥ {limit:g}",
                met(None if r is None else r >= limit)])
    return out


def rows_cache(j: dict) -> list[list[str]]:
    """(j): the same gateway with an in-process cache (every request a hit) and without."""
    label = "(j) cache hits ÷ uncached, c=64, closed loop"
    if "skipped" in j:
        return [[label, "—", j["skipped"], "—", "—", f"≥ {TARGETS['cache_vs_plain']:g}", "—"]]
    r = j.get("cache_closed_loop_ratio")
    out = [[label, "—", "n/a" if r is None else f"{r:.2f}", "—", "—", f"≥ {TARGETS['cache_vs_plain']:g}",
            met(None if r is None else r >= TARGETS["cache_vs_plain"])]]
    for name, what in (("gatehouse", "uncached"), ("gatehouse-cache", "cache hit")):
        a = _get(j, "latency_c1", "added", name, "p50_ms")
        limit = TARGETS["cache_hit_added_ms"] if name == "gatehouse-cache" else None
        out.append([f"(j) {what}: added latency p50, c=1, ms", "—", fmt(a), "—", "—",
                    "—" if limit is None else f"≤ {limit:g}",
                    "—" if limit is None or a is None else met(float(a.get("median", 0.0)) <= limit)])
    return out


def rows_tracing(k: dict) -> list[list[str]]:
    """(k): the same gateway with every request traced (one per OTLP protocol) and without."""
    limit = TARGETS["tracing_vs_off"]
    label = "(k) tracing on ÷ off"
    if "skipped" in k:
        return [[label, "—", k["skipped"], "—", "—", f"≥ {limit:g}", "—"]]
    out = []
    for name, e in (k.get("tracing") or {}).items():
        proto = name.removeprefix("gatehouse-trace-")
        for key, what in (("cpu_ratio", "1 / CPU per request"), ("closed_loop_ratio", "closed-loop throughput c=64")):
            r = e.get(key)
            out.append([f"{label}, {proto}: {what}, paired per round", "—", "n/a" if r is None else f"{r:.3f}",
                        "—", "—", f"≥ {limit:g}", met(None if r is None else r >= limit)])
        out.append(side_row(f"{label}, {proto}", e.get("side_by_side"), limit))
    return out


def side_row(label: str, side: dict | None, limit: float) -> list[str]:
    """A side-by-side figure (harness/together.py): both gateways loaded at once on core 0."""
    r = (side or {}).get("cpu_ratio")
    q = (side or {}).get("cpu_ratio_quartiles")
    txt = "n/a" if r is None else f"{r:.3f}" + (f" ({q[0]:.3f}-{q[1]:.3f})" if q else "")
    return [f"{label}: 1 / CPU per request, side by side (both loaded at once on core 0; quartiles)", "—", txt,
            "—", "—", f"≥ {limit:g}", met(None if r is None else r >= limit)]


def rows_routing(r_: dict) -> list[list[str]]:
    """(l): one deployment vs three under each routing strategy, and their ratios."""
    limit = TARGETS["routing_vs_single"]
    if "skipped" in r_:
        return [["(l) routing: three deployments ÷ one", "—", r_["skipped"], "—", "—", f"≥ {limit:g}", "—"]]
    out = []
    for strategy, r in (r_.get("routing_ratio") or {}).items():
        e = _get(r_, "best", f"gatehouse-{strategy}") or {}
        txt = fmt(e.get("rps"), thousands=True) if e.get("rps") else "p99 < 50 ms not reached"
        out.append([f"(l) {strategy}, three deployments: throughput, req/s",
                    fmt(_get(r_, "summary", "direct", "rps"), thousands=True),
                    txt + (" (paced)" if e.get("paced") else ""), "—", "—", "—", "—"])
        out.append([f"(l) {strategy}: three deployments ÷ one, c=64, 0 errors, p99 < 50 ms", "—",
                    "n/a" if r is None else f"{r:.3f}", "—", "—", f"≥ {limit:g}", met(None if r is None else r >= limit)])
        c = (r_.get("routing_closed_loop_ratio") or {}).get(strategy)
        out.append([f"(l) {strategy}: three ÷ one, closed loop c=64, no p99 limit", "—",
                    "n/a" if c is None else f"{c:.3f}", "—", "—", "—", "—"])
        cpu = _get(r_, "routing_paired", strategy, "cpu_ratio")
        out.append([f"(l) {strategy}: three ÷ one, 1 / CPU per request, paired per round", "—",
                    "n/a" if cpu is None else f"{cpu:.3f}", "—", "—", f"≥ {limit:g}",
                    met(None if cpu is None else cpu >= limit)])
        out.append(side_row(f"(l) {strategy}: three ÷ one", _get(r_, "routing_side_by_side", strategy), limit))
    return out


ROWS = {"a": rows_latency, "b": rows_throughput, "c": rows_streaming, "d": rows_memory,
        "e": rows_throughput, "f": rows_throughput, "g": rows_throughput,
        "h": rows_guardrails, "i": rows_workers, "j": rows_cache, "k": rows_tracing, "l": rows_routing,
        "m": rows_auto, "n": rows_engine}


def _p99_of_best(entry: dict | None, closed: dict | None) -> dict | None:
    if entry and entry.get("paced"):
        return {"median": entry["paced"]["latency_us"]["p99"] / 1000, "min": 0, "max": 0, "n": 1}
    return closed


def _mbs(kb) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.1f}"


def markdown(results: dict) -> str:
    m = results["machine"]
    v = results["versions"]
    head = ["Scenario / metric", "Direct (mock)", "Gatehouse", f"LiteLLM {v.get('litellm') or ''}".strip(),
            "Gatehouse advantage", "Target (Gatehouse)", "Met"]
    lines = [f"Run {results['date']} · {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, "
             f"{m['os']}, kernel {m['kernel']}, Python {m['python']} · gatehouse {v.get('gatehouse')} · "
             f"{v.get('wrk')}",
             "",
             f"Command: `{results['command']}` ({results['params']['rounds']} rounds × "
             f"{results['params']['duration_s']:g} s after a {results['params']['warmup_s']:g} s warm-up; "
             "medians with (min–max) over rounds; \"added\" = through the gateway minus straight to the "
             "mock in the same round; gateway pinned to core 0, wrk/stream client/mock on core 1)",
             "",
             "Direct (mock): the mock's own numbers, the baseline the added figures subtract. "
             "Gatehouse advantage: LiteLLM's added time or memory ÷ Gatehouse's, or Gatehouse's "
             "throughput ÷ LiteLLM's (above 1 favours Gatehouse).",
             "",
             "| " + " | ".join(head) + " |",
             "|" + "|".join("---" for _ in head) + "|"]
    for r in rows(results):
        lines.append("| " + " | ".join(r) + " |")
    cap = results.get("mock_capacity") or {}
    if cap:
        lines += ["", "Mock upstream capacity (wrk straight to it, c=64, same core as the load): " +
                  ", ".join(f"{k} {v['rps']:,.0f} req/s" for k, v in cap.items()) + "."]
    notes = [f"({s['id']}) {n}" for s in sorted(results["scenarios"], key=lambda s: s["id"])
             for n in s.get("notes", [])] + results.get("notes", [])
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, table_md: str) -> bool:
    try:
        text = readme.read_text()
    except OSError:
        return False
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        return False
    readme.write_text(pattern.sub(lambda _: f"{README_START}\n{table_md}{README_END}", text))
    return True


def before_after(results: dict, before: str = "gatehouse-before", after: str = "gatehouse") -> str:
    """`--baseline-src`: each metric of each scenario for the two checkouts, measured in the same
    interleaved rounds (medians over rounds; "added" is through the gateway minus direct)."""
    lines = ["| scenario | figure | metric | before | after | after ÷ before |", "|---|---|---|---|---|---|"]
    for sc in results.get("scenarios", []):
        for part in ("added", "summary"):
            figures = sc.get(part) or {}
            if not isinstance(figures, dict) or before not in figures or after not in figures:
                continue
            for metric, spread in figures[after].items():
                a = stats.median(spread) if isinstance(spread, dict) else None
                b = stats.median(figures[before].get(metric)) if isinstance(figures[before].get(metric), dict) else None
                if a is None or b is None:
                    continue
                ratio = f"{a / b:.3f}" if b else "—"
                lines.append(f"| ({sc['id']}) | {part} | {metric} | {b:,.3f} | {a:,.3f} | {ratio} |")
    return "\n".join(lines) + "\n"
