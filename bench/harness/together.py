"""Two gateways measured side by side: both on the gateway core at the same time, each loaded by
its own wrk (c=64, on the load core), their CPU time per request read over the same window.

Why: on a shared machine the same gateway's CPU per request moves by ±15% from one 3-second run
to the next (session 32: 303-419 µs per request within two minutes, one config), so a ratio of
runs made one after the other needs many rounds to settle 5%. Two gateways that share one core
for the same seconds meet the same machine: whatever slows the host slows both, and their ratio
keeps only their difference. Checked on identical gateways (b ÷ b, 6 rounds): medians 0.999,
quartiles 0.978-1.006. Sharing the core costs each gateway the cache it refills after every
switch (the absolute µs read ~30% above a gateway alone), per time slice, so alike for both:
the ratio is kept. The throughput ratio is reported too; the core's time is shared out per
thread, so a gateway with an extra busy thread (the trace exporter) gets a little more of it:
1 / CPU per request is the figure to read.
"""
from __future__ import annotations

import statistics
import threading
from pathlib import Path

from . import load
from .procs import cpu_seconds, wait_idle
from .targets import Target


def at_once(wrk: str, runs: list[tuple[Target, str, Path]], connections: int, duration: float) -> list[dict]:
    """Load every (target, url, wrk script) at once, one wrk each. Each result gains the target's
    CPU µs per request over that window, its background work for those requests (ledger, trace
    export) included: CPU is read again once every target is idle."""
    for t, _, _ in runs:
        wait_idle(t.proc)
    before = [cpu_seconds(t.proc.pid) if t.proc is not None else 0.0 for t, _, _ in runs]
    results: list[dict] = [{} for _ in runs]

    def go(i: int) -> None:
        _, url, script = runs[i]
        try:
            results[i] = load.run_wrk(wrk, url, script, connections, duration)
        except Exception as e:  # (one wrk failing must not lose the others' figures)
            results[i] = {"error": str(e)[:300]}

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(runs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for t, _, _ in runs:
        wait_idle(t.proc)
    for (t, _, _), c0, res in zip(runs, before, results):
        if t.proc is not None and res.get("requests"):
            res["cpu_us_per_request"] = (cpu_seconds(t.proc.pid) - c0) / res["requests"] * 1e6
    return results


def side_by_side(wrk: str, on: tuple[Target, str, Path], off: tuple[Target, str, Path], rounds: int,
                 duration: float, connections: int = 64, say=None) -> dict:
    """`on` and `off` loaded at once, one warm-up round then `rounds` counted ones. Per round:
    1 / CPU per request on ÷ off (off's µs ÷ on's) and throughput on ÷ off; reported as the
    median and quartiles over rounds, with each round's figures."""
    at_once(wrk, [on, off], connections, min(duration, 2.0))  # warm-up: not counted
    per_round = []
    for r in range(rounds):
        # (who starts first alternates, so that neither has the edge of a head start)
        a, b = at_once(wrk, [on, off], connections, duration) if r % 2 == 0 else \
            at_once(wrk, [off, on], connections, duration)[::-1]
        ua, ub = a.get("cpu_us_per_request"), b.get("cpu_us_per_request")
        row = {"on_us": ua, "off_us": ub, "on_rps": a.get("rps"), "off_rps": b.get("rps"),
               "errors": (a.get("error_count") or 0) + (b.get("error_count") or 0) + ("error" in a) + ("error" in b),
               "cpu_ratio": ub / ua if ua and ub else None,
               "throughput_ratio": a["rps"] / b["rps"] if a.get("rps") and b.get("rps") else None}
        per_round.append(row)
        if say is not None:
            say(f"    side by side {r + 1}/{rounds}: {on[0].name} {ua or 0:.1f} µs/req, {off[0].name} {ub or 0:.1f} "
                f"µs/req: 1 / CPU on ÷ off {row['cpu_ratio'] or 0:.3f}")
    return {"rounds": per_round, **_summary([r["cpu_ratio"] for r in per_round], "cpu_ratio"),
            **_summary([r["throughput_ratio"] for r in per_round], "throughput_ratio"),
            "errors": sum(r["errors"] for r in per_round)}


def _summary(values: list, key: str) -> dict:
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return {key: None, f"{key}_quartiles": None}
    q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [xs[0], xs[0], xs[0]]
    return {key: statistics.median(xs), f"{key}_quartiles": [q[0], q[2]]}
