"""`gatehouse eval SUITE`: run a suite through the gateway and write its reports.

Exit codes: 0 every model at or above the suite's threshold; 1 a model below it; 2 a bad suite,
bad arguments or an unreachable gateway.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

# Only argparse at import: `gatehouse serve` builds this parser too, and must not pay for the
# runner's imports (aiohttp sessions, jsonschema, rich) in its start time and memory.
if TYPE_CHECKING:
    from gatehouse.cli.common import Subparsers
    from gatehouse.evals.runner import CaseResult, Run, RunOptions
    from gatehouse.evals.suite import Suite


def add_eval_command(sub: Subparsers) -> None:
    e = sub.add_parser("eval", help="run an eval suite through the gateway and report pass rates")
    e.add_argument("suite", help="suite YAML (or a promptfoo config with --from-promptfoo)")
    e.add_argument("--from-promptfoo", action="store_true", help="the file is a promptfoo config")
    e.add_argument("--models", help="comma-separated: only these of the suite's models")
    e.add_argument("--concurrency", type=int, default=4)
    e.add_argument("--retries", type=int, default=2, help="retries of transient failures (429, 502-504, resets)")
    e.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    e.add_argument("--out", help="directory for results.json, junit.xml, report.md and eval.prom")
    e.add_argument("--baseline", help="an earlier results.json: regressions are listed first")
    e.add_argument("--threshold", type=float, help="override the suite's pass-rate threshold (0..1)")
    e.add_argument("--judge", help="judge model for llm-rubric/model-graded (overrides the suite's)")
    e.add_argument("--url", default=os.environ.get("GATEHOUSE_URL"),
                   help="the gateway's base URL (default $GATEHOUSE_URL; without it, in-process from --config)")
    e.add_argument("--key", default=os.environ.get("GATEHOUSE_EVAL_KEY") or os.environ.get("OPENAI_API_KEY"),
                   help="a consumer key (default $GATEHOUSE_EVAL_KEY, then $OPENAI_API_KEY)")
    e.add_argument("--config", "-c", help="gateway config: served in-process when no --url is given")
    e.add_argument("--pushgateway", help="push the run's metrics to this Prometheus Pushgateway URL")
    e.add_argument("--record", action="store_true",
                   help="record the pass rates in the gateway's store (--config) so /metrics exports them")
    e.set_defaults(func=cmd_eval)


def _load(args: argparse.Namespace) -> Suite:
    import yaml

    from gatehouse.evals.suite import SuiteError, load_suite

    if not args.from_promptfoo:
        suite = load_suite(args.suite)
    else:
        from gatehouse.evals.promptfoo import from_promptfoo

        try:
            data = yaml.safe_load(Path(args.suite).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise SuiteError(f"{args.suite}: {e}") from None
        suite, warnings = from_promptfoo(data, args.judge)
        for w in warnings:
            print(f"promptfoo import: {w}", file=sys.stderr)
    if args.judge and suite.judge is not None:
        suite.judge.model = args.judge
    if args.threshold is not None:
        suite.threshold = args.threshold
    return suite


@contextlib.asynccontextmanager
async def _gateway(args: argparse.Namespace) -> AsyncIterator[str]:
    """The base URL to evaluate against: --url, or the --config gateway served in-process."""
    if args.url:
        yield args.url
        return
    import uvicorn

    from gatehouse.app import GatehouseApp
    from gatehouse.cli.common import load_config
    from gatehouse.evals.suite import SuiteError
    from gatehouse.runtime import Runtime
    from gatehouse.server.protocol import H1Protocol

    cfg = load_config(args.config)

    async def build() -> Runtime:
        return await Runtime.build(cfg)

    server = uvicorn.Server(uvicorn.Config(GatehouseApp(build, cfg.server.cors_origins), host="127.0.0.1", port=0,
                                           http=H1Protocol, ws="none", lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            raise SuiteError("the in-process gateway did not start (see the log above)")
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def _progress(total: int) -> tuple[contextlib.AbstractContextManager[object], RunOptions]:
    """A rich progress bar on a terminal; nothing when stderr is a pipe or a file."""
    from gatehouse.evals.runner import RunOptions

    opts = RunOptions(base_url="", key="")
    if not sys.stderr.isatty():
        return contextlib.nullcontext(), opts
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("eval"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[failed]} failed"),
                   TimeElapsedColumn(), console=Console(stderr=True))
    task = bar.add_task("eval", total=total, failed=0)
    failed = 0

    def advance(result: CaseResult) -> None:
        nonlocal failed
        failed += result.status != "passed"
        bar.update(task, advance=1, failed=failed)

    opts.on_result = advance
    return bar, opts


def _summary(run: Run, threshold: float) -> None:
    from rich.console import Console
    from rich.table import Table

    from gatehouse.evals.report import by_model

    table = Table(title="pass rate per model")
    for col in ("model", "pass rate", "passed", "failed", "errors"):
        table.add_column(col)
    for model, rate in by_model(run.results).items():
        c = rate.counts or {}
        style = "red" if rate.ratio < threshold else "green"
        table.add_row(model, f"[{style}]{100 * rate.ratio:.1f}%[/{style}]", str(c.get("passed", 0)),
                      str(c.get("failed", 0)), str(c.get("error", 0)))
    Console().print(table)


async def _run(args: argparse.Namespace, suite: Suite) -> Run:
    from gatehouse.evals.runner import plan, run_suite

    models = [m.strip() for m in args.models.split(",")] if args.models else None
    bar, opts = _progress(len(plan(suite, models)))
    async with _gateway(args) as url:
        opts.base_url, opts.key, opts.models = url, args.key, models
        opts.concurrency, opts.retries, opts.timeout_s = args.concurrency, args.retries, args.timeout
        with bar:
            return await run_suite(suite, opts)


def cmd_eval(args: argparse.Namespace) -> int:
    from gatehouse.evals.report import below_threshold, diff, registry_for, write_outputs
    from gatehouse.evals.suite import SuiteError

    try:
        suite = _load(args)
    except SuiteError as e:
        print(f"eval: {e}", file=sys.stderr)
        return 2
    if not args.key:
        print("eval: no key: pass --key or set GATEHOUSE_EVAL_KEY", file=sys.stderr)
        return 2
    if not args.url and not args.config:
        print("eval: no gateway: pass --url (or set GATEHOUSE_URL), or --config to serve one in-process",
              file=sys.stderr)
        return 2
    if args.record and not args.config:
        print("eval: --record needs --config (the store the gateway reads)", file=sys.stderr)
        return 2
    baseline = json.loads(Path(args.baseline).read_text()) if args.baseline else None
    name = suite.description or Path(args.suite).stem
    run = asyncio.run(_run(args, suite))
    if not run.results:
        print("eval: no cases matched the selected models", file=sys.stderr)
        return 2
    _summary(run, suite.threshold)
    if baseline is not None:
        for model, case, now in diff(run, baseline).regressions:
            print(f"REGRESSION {model} {case}: passed in the baseline, {now} now")
    if args.out:
        files = write_outputs(Path(args.out), run, name, suite.threshold, baseline)
        print("wrote " + ", ".join(str(p) for p in files.values()))
    if args.pushgateway:
        from prometheus_client import push_to_gateway

        push_to_gateway(args.pushgateway, job="gatehouse_eval", registry=registry_for(run, name))
    if args.record:
        from gatehouse.cli.common import load_config
        from gatehouse.evals.record import record_run

        asyncio.run(record_run(load_config(args.config), name, run))
    low = below_threshold(run.results, suite.threshold)
    if low:
        print(f"below the threshold of {100 * suite.threshold:.0f}%: {', '.join(low)}", file=sys.stderr)
        return 1
    return 0
