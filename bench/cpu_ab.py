"""Gateway CPU time per request, two checkouts side by side: a steadier before/after check than
throughput on a shared machine (other work steals wall time far more than it changes CPU time).

    .venv/bin/python bench/cpu_ab.py --before ../before/src [--path e] [--rounds 6]
    .venv/bin/python bench/cpu_ab.py --path hit     # this checkout: cache hits vs uncached pass-through
    .venv/bin/python bench/cpu_ab.py --path miss    # this checkout: cacheable misses vs uncached pass-through

Each checkout's gateway runs the bench config on core 0 behind the C mock; wrk (c=64, 5 s) loads
one at a time in alternating order; CPU is read from /proc/<pid>/stat once the gateway is idle.
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

from harness import load, procs, targets as tg, tools
from harness.procs import cpu_seconds, wait_idle
from harness.rounds import ANTHROPIC_VERSION, anthropic_body, openai_body
from harness.scenarios import cached_body


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", type=Path, help="the other checkout's src/ directory (not for hit/miss)")
    p.add_argument("--path", choices=("b", "e", "hit", "miss"), default="b",
                   help="b: OpenAI pass-through, e: Anthropic translation, hit/miss: response cache (see above)")
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
    procs.install_cleanup()
    exes, wrk = tools.build_c(), tools.ensure_wrk()
    run_dir = Path(tempfile.mkdtemp(prefix="cpu-ab-"))
    mock = tg.start_mock(exes["mock_upstream"], run_dir, tg.MockSettings(0, 512, 64, 5.0))
    cache = args.path in ("hit", "miss")
    if not cache and args.before is None:
        p.error("--before is required for paths b and e")
    own = tg.PROJECT_DIR / "src"
    after = tg.start_gatehouse(mock, run_dir, name="after", source=own,
                               cache={"ttl_seconds": 3600, "backend": "memory"} if cache else None)
    before = tg.start_gatehouse(mock, run_dir, name="before", source=own if cache else args.before.resolve())
    anthropic = args.path == "e"
    body = anthropic_body() if anthropic else cached_body() if cache else openai_body()
    extra = {"Cache-Control": "no-cache"} if args.path == "miss" else {}
    url_path = "/v1/messages" if anthropic else "/v1/chat/completions"
    out: dict[str, list[tuple[float, float]]] = {"after": [], "before": []}
    try:
        for r in range(args.rounds):
            for t in (after, before) if r % 2 == 0 else (before, after):
                headers = {**t.anthropic_headers, **ANTHROPIC_VERSION} if anthropic else {**t.openai_headers, **extra}
                script = load.wrk_script(run_dir / f"r{r}-{t.name}.lua", body, headers)
                wait_idle(t.proc)
                c0 = cpu_seconds(t.proc.pid)
                res = load.run_wrk(wrk, f"{t.base}{url_path}", script, 64, 5.0)
                wait_idle(t.proc)
                us = (cpu_seconds(t.proc.pid) - c0) / res["requests"] * 1e6
                out[t.name].append((us, res["rps"]))
                print(f"{t.name:6} {us:7.1f} µs/req {res['rps']:8.0f} req/s", flush=True)
    finally:
        procs.stop_all()
    b_us, a_us = (statistics.median(x for x, _ in out[k]) for k in ("before", "after"))
    b_rps, a_rps = (statistics.median(y for _, y in out[k]) for k in ("before", "after"))
    print(f"median CPU per request: before {b_us:.1f} µs, after {a_us:.1f} µs (after ÷ before {a_us / b_us:.3f}); "
          f"throughput after ÷ before {a_rps / b_rps:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
