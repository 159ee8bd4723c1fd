"""Gateway CPU time per request, two checkouts side by side: a steadier before/after check than
throughput on a shared machine (other work steals wall time far more than it changes CPU time).

    .venv/bin/python bench/cpu_ab.py --before ../before/src [--path e] [--rounds 6]
    .venv/bin/python bench/cpu_ab.py --before src --before-path b --path h   # on ÷ off, one checkout
    .venv/bin/python bench/cpu_ab.py --before src --before-path b --path k --together   # both at once
    .venv/bin/python bench/cpu_ab.py --path hit     # this checkout: cache hits vs uncached pass-through
    .venv/bin/python bench/cpu_ab.py --path miss    # this checkout: cacheable misses vs uncached pass-through

Each checkout's gateway runs the bench config on core 0 behind the C mock; wrk (c=64, 5 s) loads
one at a time in alternating order; CPU is read from /proc/<pid>/stat once the gateway is idle.
`--together` loads both at the same time instead (both on core 0, a wrk each; harness/together.py):
what slows the host then slows both, and the ratio per round keeps only their difference.
`--path` picks the config of a bench scenario: b (OpenAI pass-through), e (Anthropic
translation), h (the e-commerce guardrails policy on), k (tracing on, every request sampled,
exporting to bench/otlp_sink.py with `--protocol`), l (three deployments under `--strategy`).
`--before-path` gives the other checkout another path (default: the same), e.g. `b` for the
feature-off figure in the same interleaved rounds.
The cache paths (`hit`, `miss`) compare two gateways of THIS checkout on the same temperature-0
OpenAI request: "after" has an in-process `cache:` block on the model, "before" has none (plain
pass-through). `hit`: every request after the first is answered from the cache; `miss`: every
request says `Cache-Control: no-cache` (no lookup; the answer goes upstream, is forwarded and stored
again), i.e. what a cacheable miss costs over a pass-through request.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import load, procs, targets as tg, together, tools
from harness.procs import cpu_seconds, wait_idle
from harness.rounds import ANTHROPIC_VERSION, anthropic_body, openai_body
from harness.scenarios import cached_body

PATHS = ("b", "e", "h", "k", "l")
CACHE_PATHS = ("hit", "miss")


def config_for(path: str, args: argparse.Namespace, sink_ports: tuple[int, int] | None) -> dict:
    """start_gatehouse's config keywords for a bench scenario's gateway (harness/scenarios.py)."""
    if path == "h":
        return {"guardrails": "ecommerce"}
    if path == "k":
        assert sink_ports is not None
        http_port, grpc_port = sink_ports
        endpoint = (f"http://127.0.0.1:{grpc_port}" if args.protocol == "grpc"
                    else f"http://127.0.0.1:{http_port}/v1/traces")
        return {"tracing": {"enabled": True, "protocol": args.protocol, "endpoint": endpoint}}
    if path == "l":
        return {"routing": args.strategy}
    return {}


def _load(t: tg.Target, path: str, cache: bool, extra: dict[str, str]) -> tuple[str, bytes, dict[str, str]]:
    """(url path, body, headers) of a checkout's gateway on a scenario's path."""
    anthropic = path == "e"
    body = anthropic_body() if anthropic else cached_body() if cache else openai_body()
    url_path = "/v1/messages" if anthropic else "/v1/chat/completions"
    headers = {**t.anthropic_headers, **ANTHROPIC_VERSION} if anthropic else {**t.openai_headers, **extra}
    return url_path, body, headers


def together_ab(args: argparse.Namespace, wrk: str, run_dir: Path, after: tg.Target, before: tg.Target,
                paths: dict[str, str], extra: dict[str, str]) -> int:
    """--together: both gateways loaded at once, `--rounds` times (harness/together.py)."""
    runs = []
    for t in (after, before):
        url_path, body, headers = _load(t, paths[t.name], args.path in CACHE_PATHS, extra)
        runs.append((t, f"{t.base}{url_path}", load.wrk_script(run_dir / f"together-{t.name}.lua", body, headers)))
    try:
        res = together.side_by_side(wrk, runs[0], runs[1], args.rounds, args.duration, say=print)
    finally:
        procs.stop_all()
    q = res["cpu_ratio_quartiles"] or [0.0, 0.0]
    print(f"side by side, {args.rounds} rounds: 1 / CPU per request after ÷ before {res['cpu_ratio'] or 0:.3f} "
          f"(quartiles {q[0]:.3f}-{q[1]:.3f}); throughput after ÷ before {res['throughput_ratio'] or 0:.3f}"
          + (f"; {res['errors']} errors" if res["errors"] else ""))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", type=Path, help="the other checkout's src/ directory (not for hit/miss)")
    p.add_argument("--path", choices=PATHS + CACHE_PATHS, default="b", help="which scenario's config (see above)")
    p.add_argument("--before-path", choices=PATHS, default=None, help="the other checkout's path (default: --path)")
    p.add_argument("--protocol", choices=("http/protobuf", "http/json", "grpc"), default="http/protobuf",
                   help="k: the OTLP protocol")
    p.add_argument("--strategy", default="least-busy", help="l: the routing strategy")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--together", action="store_true",
                   help="load both gateways at the same time, both on core 0 (harness/together.py): "
                        "the host's drift between rounds cancels out of the ratio")
    args = p.parse_args()
    before_path = args.before_path or args.path
    procs.install_cleanup()
    exes, wrk = tools.build_c(), tools.ensure_wrk()
    run_dir = Path(tempfile.mkdtemp(prefix="cpu-ab-"))
    mock = tg.start_mock(exes["mock_upstream"], run_dir, tg.MockSettings(0, 512, 64, 5.0))
    cache = args.path in CACHE_PATHS
    if not cache and args.before is None:
        p.error("--before is required for every path but hit and miss")
    sink_ports = None
    if "k" in (args.path, before_path):
        _sink, http_port, grpc_port = tg.start_otlp_sink(run_dir)
        sink_ports = (http_port, grpc_port)
    own = tg.PROJECT_DIR / "src"
    if cache:
        after = tg.start_gatehouse(mock, run_dir, name="after", source=own,
                                   cache={"ttl_seconds": 3600, "backend": "memory"})
        before = tg.start_gatehouse(mock, run_dir, name="before", source=own)
        paths = {"after": args.path, "before": "b"}
    else:
        after = tg.start_gatehouse(mock, run_dir, name="after", source=own, **config_for(args.path, args, sink_ports))
        before = tg.start_gatehouse(mock, run_dir, name="before", source=args.before.resolve(),
                                    **config_for(before_path, args, sink_ports))
        paths = {"after": args.path, "before": before_path}
    extra = {"Cache-Control": "no-cache"} if args.path == "miss" else {}
    out: dict[str, list[tuple[float, float]]] = {"after": [], "before": []}
    if args.together:
        return together_ab(args, wrk, run_dir, after, before, paths, extra)
    try:
        for r in range(args.rounds):
            for t in (after, before) if r % 2 == 0 else (before, after):
                url_path, body, headers = _load(t, paths[t.name], cache, extra)
                script = load.wrk_script(run_dir / f"r{r}-{t.name}.lua", body, headers)
                wait_idle(t.proc)
                c0 = cpu_seconds(t.proc.pid)
                res = load.run_wrk(wrk, f"{t.base}{url_path}", script, 64, args.duration)
                wait_idle(t.proc)  # (k) the export thread's last batch counts too
                us = (cpu_seconds(t.proc.pid) - c0) / res["requests"] * 1e6
                out[t.name].append((us, res["rps"]))
                print(f"{t.name:6} {us:7.1f} µs/req {res['rps']:8.0f} req/s", flush=True)
    finally:
        procs.stop_all()
    warnings = [ln for t in (after, before) for ln in t.proc.log_tail(200).splitlines() if "tracing:" in ln][:5]
    b_us, a_us = (statistics.median(x for x, _ in out[k]) for k in ("before", "after"))
    b_rps, a_rps = (statistics.median(y for _, y in out[k]) for k in ("before", "after"))
    print(f"median CPU per request: before {b_us:.1f} µs, after {a_us:.1f} µs (after ÷ before {a_us / b_us:.3f}); "
          f"throughput after ÷ before {a_rps / b_rps:.3f}")
    if warnings:
        print("tracing warnings:", *warnings, sep="\n  ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
