"""Instructions per request of bench gateways under callgrind: a before/after or on/off check that
a busy machine does not move (CPU time per request, bench/cpu_ab.py, swings ±10% there).

    .venv/bin/python bench/insn_ab.py b@after h@after h@before --before ../before/src [--duration 10]
    .venv/bin/python bench/insn_ab.py hit@after hit@before b@after --before ../before/src   # cache hits
    .venv/bin/python bench/insn_ab.py b@after k@after --threads   # tracing's cost per thread (loop, export)

`hit` and `miss` (as in cpu_ab.py) give the gateway an in-process `cache:` block and send a
temperature-0 request (`miss`: with `Cache-Control: no-cache`); `b@after` is the uncached figure.

Each gateway (`path@after`: this checkout, `path@before`: --before; paths as in cpu_ab.py) is
started under `valgrind --tool=callgrind` with instrumentation off, warmed up with wrk, then counted
twice, once the warm-up's work has settled: an idle window (the background work: pollers) and
a window with wrk at c=64 plus a few seconds for the export/ledger threads' batches. Reported: (load Ir − idle Ir scaled to the
load window's length) ÷ requests served. Counts user-space instructions of every thread: not
time (cache misses and syscalls are not in it), but steady to ~1% from run to run as long as the
gateway is the bottleneck (under valgrind it is, unless the load core is busy: a gateway left
idle part of the time batches less per event-loop turn and counts more per request; compare
gateways whose request counts are close).
"""
from __future__ import annotations

import argparse
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cpu_ab  # the scenarios' configs
from harness import load, procs, targets as tg, tools
from harness.rounds import openai_body
from harness.scenarios import cached_body

IDLE_S, SETTLE_S = 5.0, 6.0  # (settle: the trace export thread sends at least every 5 s)


def dump(pid: int, out: Path) -> dict[str, int]:
    """Dump callgrind's counts (they restart from zero) and return the dump's total Ir per
    thread: callgrind's thread number ("01" is the event loop's) with --separate-threads=yes,
    else one total under ""."""
    before = set(out.parent.glob(out.name + "*"))
    subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=False)
    for _ in range(100):
        if set(out.parent.glob(out.name + "*")) - before:
            time.sleep(0.5)  # (one file per thread: let them all be written)
            totals = {}
            for f in sorted(set(out.parent.glob(out.name + "*")) - before):
                thread = f.name.rpartition("-")[2] if "-" in f.name else ""
                for line in f.read_text(errors="replace").splitlines():
                    if line.startswith(("summary:", "totals:")):
                        totals[thread] = int(line.split()[1])
                        break
            if totals:
                return totals
        time.sleep(0.2)
    raise RuntimeError("callgrind wrote no dump")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gateways", nargs="+", help="path@after or path@before, path one of " + "|".join(cpu_ab.PATHS))
    p.add_argument("--before", type=Path, help="the other checkout's src/ directory")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=64,
                   help="wrk connections in the counted window; 1: no batching, so the count does not depend on "
                        "how busy the machine is")
    p.add_argument("--threads", action="store_true",
                   help="count each thread apart (callgrind --separate-threads=yes) and print each one's "
                        "instructions per request too: the event loop is thread 01")
    p.add_argument("--protocol", default="http/protobuf")
    p.add_argument("--strategy", default="least-busy")
    args = p.parse_args()
    procs.install_cleanup()
    exes, wrk = tools.build_c(), tools.ensure_wrk()
    run_dir = Path(tempfile.mkdtemp(prefix="insn-ab-"))
    wrapper = run_dir / "gatehouse-callgrind"
    wrapper.write_text(f'#!/bin/sh\nexec valgrind --tool=callgrind --instr-atstart=no '
                       f'{"--separate-threads=yes " if args.threads else ""}'
                       f'--callgrind-out-file="$GATEHOUSE_HOME/cg.out" {tg.GATEHOUSE_EXE.parent / "python"} {tg.GATEHOUSE_EXE} "$@" '
                       f'2>"$GATEHOUSE_HOME/valgrind.log"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    tg.GATEHOUSE_EXE = wrapper
    wait_http = procs.wait_http
    tg.procs.wait_http = lambda url, proc, timeout=60: wait_http(url, proc, timeout=900)  # a slow start
    mock = tg.start_mock(exes["mock_upstream"], run_dir, tg.MockSettings(0, 512, 64, 5.0))
    sink = None
    if any(g.startswith("k@") for g in args.gateways):
        _proc, http_port, grpc_port = tg.start_otlp_sink(run_dir)
        sink = (http_port, grpc_port)
    try:
        for i, spec in enumerate(args.gateways):
            path, _, which = spec.partition("@")
            src = tg.PROJECT_DIR / "src" if which == "after" else args.before
            if src is None or path not in cpu_ab.PATHS + cpu_ab.CACHE_PATHS:
                raise SystemExit(f"{spec}: not path@after or path@before (with --before)")
            name = f"{spec.replace('@', '-')}-{i}"  # (its own directory: callgrind numbers its dumps)
            cache = path in cpu_ab.CACHE_PATHS  # (an in-process cache block; a temperature-0 request)
            config = {"cache": {"ttl_seconds": 3600, "backend": "memory"}} if cache else cpu_ab.config_for(path, args, sink)
            g = tg.start_gatehouse(mock, run_dir, name=name, source=Path(src).resolve(), **config)
            assert g.proc is not None
            headers = {**g.openai_headers, **({"Cache-Control": "no-cache"} if path == "miss" else {})}
            script = load.wrk_script(run_dir / f"{name}.lua", cached_body() if cache else openai_body(), headers)
            url = f"{g.base}/v1/chat/completions"
            load.run_wrk(wrk, url, script, 64, 5.0)  # warm-up
            time.sleep(SETTLE_S)  # its records written, its spans sent: not in the idle window
            out = run_dir / name / "cg.out"
            subprocess.run(["callgrind_control", "-i", "on", str(g.proc.pid)], capture_output=True, check=False)
            dump(g.proc.pid, out)  # (zero)
            time.sleep(IDLE_S)
            idle = dump(g.proc.pid, out)
            t0 = time.monotonic()
            res = load.run_wrk(wrk, url, script, args.connections, args.duration)
            time.sleep(SETTLE_S)
            busy, window = dump(g.proc.pid, out), time.monotonic() - t0
            n = max(1, res["requests"])
            per = {t: (ir - idle.get(t, 0) * window / IDLE_S) / n for t, ir in busy.items()}
            print(f"{spec:12} {res['requests']:6d} requests  {sum(per.values()) / 1e3:8.1f}k instructions/request "
                  f"(idle {sum(idle.values()) / IDLE_S / 1e6:.1f}M/s)", flush=True)
            if args.threads:
                print("             per thread: " + ", ".join(
                    f"{t} {v / 1e3:.1f}k" for t, v in sorted(per.items()) if abs(v) >= 500), flush=True)
            g.proc.stop()
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
