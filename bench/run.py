"""Gatehouse benchmark: every scenario, side by side with LiteLLM, on this machine.

    make bench                                  # the full run (~10-15 minutes)
    make bench BENCH_ARGS="--quick"             # a short run while developing
    .venv/bin/python bench/run.py --soak 60     # a shorter soak than the default 10 minutes

See bench/README.md for the method. Results go to bench/results/<date>.json and <date>.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import procs, report, rounds, scenario_auto, scenario_engine, scenarios, targets as tg, tools

ALL = "abcdefghijklmn"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="short rounds (2 s), 10 s soak: for development; results go to <date>-quick.*")
    p.add_argument("--rounds", type=int, default=3, help="measured rounds per scenario (default 3)")
    p.add_argument("--duration", type=float, default=None, help="seconds per measured run (default 8)")
    p.add_argument("--warmup", type=float, default=None, help="seconds of discarded warm-up per target (default 2)")
    p.add_argument("--soak", type=float, default=None, help="seconds of the memory soak (default 600, the 10 minutes the method asks for)")
    p.add_argument("--scenarios", default=ALL, help=f"which scenarios to run, e.g. 'ab' (default '{ALL}')")
    p.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM side")
    p.add_argument("--no-gatehouse", action="store_true", help="skip Gatehouse (e.g. to check the LiteLLM side alone)")
    p.add_argument("--upstream-latency-ms", type=float, default=0.0, help="mock upstream latency (default 0)")
    p.add_argument("--size", type=int, default=512, help="characters of generated text per response (default 512)")
    p.add_argument("--chunks", type=int, default=64, help="content chunks per stream (default 64)")
    p.add_argument("--gap-ms", type=float, default=5.0, help="gap between stream chunks (default 5)")
    p.add_argument("--out", type=Path, default=tools.BENCH_DIR / "results", help="results directory")
    p.add_argument("--no-readme", action="store_true", help="do not update bench/README.md's latest table")
    p.add_argument("--keep", action="store_true", help="keep the run directory (configs, logs)")
    p.add_argument("--baseline-src", type=Path, help="also run Gatehouse from this src/ directory (e.g. a worktree of "
                   "the commit before a change) as 'gatehouse-before', interleaved in the same rounds, and print "
                   "before/after per metric (implies --no-litellm)")
    args = p.parse_args(argv)
    args.duration = args.duration or (2.0 if args.quick else 8.0)
    args.warmup = args.warmup or (1.0 if args.quick else 2.0)
    args.soak = args.soak or (10.0 if args.quick else 600.0)
    args.scenarios = "".join(s for s in ALL if s in args.scenarios.lower())
    if args.baseline_src is not None:
        args.no_litellm = True
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    procs.install_cleanup()
    started = time.monotonic()
    notes: list[str] = []
    if args.rounds < 3:
        notes.append(f"only {args.rounds} round(s): the method asks for at least 3")
    load1 = float(open("/proc/loadavg").read().split()[0])
    if load1 > 0.5:
        notes.append(f"the machine was not quiet: load average {load1:.2f} when the run started "
                     "(other work on these cores shows up as noise, mostly in p99)")
    if not procs.can_pin():
        notes.append("fewer than 2 cores or no taskset: nothing is pinned, numbers are not comparable")

    exes = tools.build_c()
    wrk = tools.ensure_wrk()
    litellm_exe = None if args.no_litellm else tools.ensure_litellm()

    run_dir = Path(tempfile.mkdtemp(prefix="gatehouse-bench-"))
    print(f"bench: run directory {run_dir}", flush=True)
    date = dt.datetime.now().strftime("%Y-%m-%d")
    settings = tg.MockSettings(args.upstream_latency_ms, args.size, args.chunks, args.gap_ms)
    results: dict = {
        "date": date, "started_at": dt.datetime.now().isoformat(timespec="seconds"),
        "command": report.command_line(), "machine": report.machine(),
        "versions": {"gatehouse": report.git_rev(tg.PROJECT_DIR), "wrk": tools.wrk_version(wrk),
                     "litellm": tg.litellm_version(litellm_exe) if litellm_exe else None},
        "params": {"rounds": args.rounds, "duration_s": args.duration, "warmup_s": args.warmup,
                   "soak_s": args.soak, "quick": args.quick, "mock": vars(settings),
                   "cores": {"gateway": procs.GATEWAY_CPU, "load_and_mock": procs.LOAD_CPU}},
        "scenarios": [], "notes": notes, "loadavg_at_start": load1,
    }
    failed = False
    try:
        mock = tg.start_mock(exes["mock_upstream"], run_dir, settings)
        gateways = []
        if not args.no_gatehouse:
            try:
                gateways.append(tg.start_gatehouse(mock, run_dir))
            except tg.StartError as e:
                print(f"bench: Gatehouse is not runnable, measuring without it:\n{e}", flush=True)
                notes.append(f"Gatehouse did not start: {str(e).splitlines()[0][:200]}")
        if args.baseline_src is not None:
            gateways.append(tg.start_gatehouse(mock, run_dir, name="gatehouse-before", source=args.baseline_src.resolve()))
        if litellm_exe is not None:
            try:
                gateways.append(tg.start_litellm(litellm_exe, mock, run_dir))
            except tg.StartError as e:
                print(f"bench: LiteLLM did not start, measuring without it:\n{e}", flush=True)
                notes.append(f"LiteLLM did not start: {str(e).splitlines()[0][:200]}")
        time.sleep(3.0)  # idle: started, one request served, nothing in flight
        for g in gateways:
            g.info["rss_idle_kb"] = g.rss_kb()
            print(f"bench: {g.name} idle RSS {g.info['rss_idle_kb'] / 1024:.1f} MB", flush=True)

        ctx = rounds.Ctx(run_dir=run_dir, wrk=wrk, exes=exes, mock=mock, mock_settings=settings,
                            gateways=gateways, rounds=args.rounds, duration=args.duration,
                            warmup=args.warmup, soak=args.soak, litellm_exe=litellm_exe)
        results["mock_capacity"] = scenarios.mock_capacity(ctx)
        plan = [("a", scenarios.scenario_latency), ("b", scenarios.scenario_throughput),
                ("c", scenarios.scenario_streaming), ("e", scenarios.scenario_translation),
                ("g", scenarios.scenario_responses), ("d", scenarios.scenario_memory),
                ("f", scenarios.scenario_distributed), ("h", scenarios.scenario_guardrails),
                ("i", scenarios.scenario_workers), ("j", scenarios.scenario_cache),
                ("k", scenarios.scenario_tracing), ("l", scenarios.scenario_routing), ("m", scenario_auto.scenario_auto),
                ("n", scenario_engine.scenario_engine)]
        for sid, fn in plan:
            if sid not in args.scenarios:
                continue
            if sid in "fhijklmn" and args.no_gatehouse:
                continue
            if sid != "f" and not gateways:
                continue
            ctx.scenario = sid
            try:
                results["scenarios"].append(fn(ctx))
            except rounds.MockDied as e:
                print(f"bench: {e}", flush=True)
                notes.append(f"stopped early: {str(e).splitlines()[0]}")
                failed = True
                break
            except Exception as e:
                traceback.print_exc()
                results["scenarios"].append({"id": sid, "error": f"{type(e).__name__}: {e}"[:500]})
                notes.append(f"scenario ({sid}) failed: {type(e).__name__}: {str(e)[:200]}")
                failed = True
        results["scenarios"].sort(key=lambda s: s["id"])
        results["incidents"] = ctx.incidents
        for i in ctx.incidents:
            notes.append(f"{i['target']} died during ({i['scenario']}): {i['how']}; {i.get('restart', 'not restarted')}")
        failed = failed or bool(ctx.incidents)
    except KeyboardInterrupt:
        print("bench: interrupted; stopping everything", flush=True)
        procs.stop_all()
        return 130
    except BaseException:
        failed = True
        raise
    finally:
        procs.stop_all()
        if args.keep or failed:
            print(f"bench: kept {run_dir} (configs and logs of every process)", flush=True)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)

    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["loadavg_at_end"] = float(open("/proc/loadavg").read().split()[0])
    args.out.mkdir(parents=True, exist_ok=True)
    stem = date + ("-quick" if args.quick else "")
    table = report.markdown(results)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(f"# Gatehouse bench {stem}\n\n{table}")
    if args.baseline_src is not None:
        compared = report.before_after(results)
        table += f"\nBefore ({args.baseline_src}) and after ({tg.PROJECT_DIR / 'src'}), same rounds:\n\n{compared}"
    print("\n" + table, flush=True)
    print(f"bench: wrote {args.out / (stem + '.json')} and {stem}.md in {results['elapsed_s']:.0f} s", flush=True)
    full = not args.quick and args.scenarios == ALL and not args.no_litellm and not args.no_gatehouse
    if full and not args.no_readme and args.out == tools.BENCH_DIR / "results":
        for readme in (tools.BENCH_DIR / "README.md", tools.BENCH_DIR.parent / "README.md"):
            if report.update_readme(readme, table):
                print(f"bench: updated the latest table in {readme.relative_to(tools.BENCH_DIR.parent)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
