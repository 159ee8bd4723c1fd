"""The scenarios (a)-(l). Each returns a dict that goes into results/<date>.json as is;
report.py turns it into table rows. The round runner is in rounds.py.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import signal
import time
from collections.abc import Iterator

from . import load, stats, targets as tg, together
from .procs import Proc, cpu_seconds, http, wait_idle
from .rounds import (
    ANTHROPIC_VERSION,
    Ctx,
    added,
    alone,
    anthropic_body,
    available,
    brief,
    errors,
    interleaved,
    openai_body,
    responses_body,
    revive,
    say,
    settle,
    summaries,
    wrk_runner,
)
from .targets import Target

P99_LIMIT_US = 50_000  # scenario (b): throughput counts only while p99 stays under 50 ms
CONCURRENCY = 64
STREAMS = 100
MOCK_BOUND = 0.9       # a result within 10% of the mock's own capacity is flagged


# ---- the mock's own capacity -------------------------------------------------------------------

def mock_capacity(ctx: Ctx) -> dict:
    say("mock capacity (wrk straight to the mock, both on the load core):")
    out = {}
    for name, path, body, anthropic in (("openai_json", "/v1/chat/completions", openai_body(), False),
                                        ("anthropic_json", "/v1/messages", anthropic_body(), True)):
        run = wrk_runner(ctx, path, body, CONCURRENCY, anthropic)
        run(ctx.mock, ctx.warmup)
        res = run(ctx.mock, ctx.duration)
        out[name] = {"rps": res["rps"], "p99_ms": res["latency_us"]["p99"] / 1000,
                     "errors": res["error_count"]}
        say(f"  {name:<15} {res['rps']:9.0f} req/s at c={CONCURRENCY} (p99 {res['latency_us']['p99'] / 1000:.2f} ms)")
    ctx.capacity = out
    return out


# ---- (a) added latency at concurrency 1 ----------------------------------------------------------

LAT_METRICS = {"p50_ms": (("latency_us", "p50"), 1e-3), "p99_ms": (("latency_us", "p99"), 1e-3),
               "rps": (("rps",), 1.0)}


def scenario_latency(ctx: Ctx) -> dict:
    say("(a) added latency, concurrency 1, non-stream")
    notes: list[str] = []
    targets = available(ctx, ctx.all_targets, "/v1/chat/completions", openai_body(), False, notes)
    run = wrk_runner(ctx, "/v1/chat/completions", openai_body(), 1)
    results = interleaved(ctx, targets, run, "a")
    return {"id": "a", "title": "Added latency at concurrency 1 (non-stream)",
            "params": {"connections": 1, "duration_s": ctx.duration, "rounds": ctx.rounds},
            "summary": summaries(results, LAT_METRICS),
            "added": added(results, {k: v for k, v in LAT_METRICS.items() if k != "rps"}),
            "errors": {n: errors(r) for n, r in results.items()}, "notes": notes, "rounds": results}


# ---- (b) throughput at concurrency 64 -------------------------------------------------------------

TP_METRICS = {"rps": (("rps",), 1.0), "p50_ms": (("latency_us", "p50"), 1e-3),
              "p99_ms": (("latency_us", "p99"), 1e-3)}


def _meets_slo(res: dict) -> bool:
    return "error" not in res and res["error_count"] == 0 and res["latency_us"]["p99"] < P99_LIMIT_US


def _paced_search(ctx: Ctx, t: Target, path: str, body: bytes, anthropic: bool, closed_rps: float) -> dict | None:
    """When the closed loop breaks p99 < 50 ms, pace the 64 connections down (wrk `delay()`)
    in steps until it holds, then try once halfway back up to the last step that failed."""
    headers = {**t.anthropic_headers, **ANTHROPIC_VERSION} if anthropic else dict(t.openai_headers)

    def attempt(frac: float) -> dict | None:
        rate = max(1.0, closed_rps * frac)
        delay = max(1, round(CONCURRENCY * 1000 / rate))
        if not revive(ctx, t):
            return None
        try:
            with alone(ctx, t):
                res = load.run_wrk(ctx.wrk, f"{t.base}{path}", ctx.script(body, headers, delay), CONCURRENCY,
                                   ctx.duration)
        except Exception as e:
            say(f"  paced {t.name} at ~{rate:.0f} req/s: ERROR {str(e)[:200]}")
            revive(ctx, t)
            return None
        settle(t)
        say(f"  paced {t.name} at ~{rate:.0f} req/s (delay {delay} ms): {brief(res)}")
        res["paced_delay_ms"] = delay
        return res

    failed_frac = 1.0
    for frac in (0.8, 0.6, 0.4, 0.3, 0.2, 0.1):
        res = attempt(frac)
        if res is not None and _meets_slo(res):
            if failed_frac - frac > 0.1 + 1e-9:
                better = attempt((frac + failed_frac) / 2)
                if better is not None and _meets_slo(better) and better["rps"] > res["rps"]:
                    return better
            return res
        failed_frac = frac
    return None


def _throughput(ctx: Ctx, sid: str, title: str, path: str, body: bytes, anthropic: bool,
                targets: list[Target], sample_rss: bool, pace: bool = True, run=None) -> dict:
    """`pace=False`: closed loop only; `run`: another runner than plain wrk (scenario k)."""
    notes: list[str] = []
    targets = available(ctx, targets, path, body, anthropic, notes)
    run = run or wrk_runner(ctx, path, body, CONCURRENCY, anthropic, sample_rss=sample_rss)
    results = interleaved(ctx, targets, run, sid)
    summary = summaries(results, TP_METRICS)
    best: dict[str, dict] = {}
    capacity = stats.median(summary["direct"]["rps"])
    for t in targets:
        if t.name == "direct":
            continue
        rounds = results[t.name]
        ok_rounds = [r for r in rounds if _meets_slo(r)]
        entry = {"rps": stats.spread([r["rps"] for r in ok_rounds]) if ok_rounds else None,
                 "closed_loop_rps": summary[t.name]["rps"], "rounds_meeting_slo": len(ok_rounds),
                 "paced": None}
        if pace and len(ok_rounds) * 2 <= len(rounds) and t.name.startswith("gatehouse"):
            closed = stats.median(summary[t.name]["rps"]) or 0.0
            paced = _paced_search(ctx, t, path, body, anthropic, closed) if closed else None
            entry["paced"] = paced
            if paced:
                entry["rps"] = stats.spread([paced["rps"]])
                notes.append(f"{t.name}: closed loop broke p99 < 50 ms or had errors; "
                             f"paced to {paced['rps']:.0f} req/s")
        rps = stats.median(entry["rps"]) or stats.median(entry["closed_loop_rps"])
        if capacity and rps and rps >= MOCK_BOUND * capacity:
            entry["mock_bound"] = True
            notes.append(f"{t.name}: {rps:.0f} req/s is within 10% of the mock's {capacity:.0f} req/s "
                         "- this measures the mock, not the gateway")
        best[t.name] = entry
    if "litellm" in best and best["litellm"]["rps"] is None:
        notes.append("litellm: no round met p99 < 50 ms at c=64; its closed-loop throughput is used "
                     "for the ratio (this favours LiteLLM)")
    return {"id": sid, "title": title,
            "params": {"connections": CONCURRENCY, "duration_s": ctx.duration, "rounds": ctx.rounds,
                       "p99_limit_ms": P99_LIMIT_US / 1000, "path": path},
            "summary": summary, "best": best, "mock_capacity_rps": capacity,
            "errors": {n: errors(r) for n, r in results.items()}, "notes": notes, "rounds": results}


def scenario_throughput(ctx: Ctx) -> dict:
    say(f"(b) throughput, concurrency {CONCURRENCY}, zero errors and p99 < 50 ms")
    return _throughput(ctx, "b", f"Throughput at concurrency {CONCURRENCY}", "/v1/chat/completions",
                       openai_body(), False, ctx.all_targets, sample_rss=True)


def scenario_translation(ctx: Ctx) -> dict:
    say("(e) translation path: Anthropic client, OpenAI upstream")
    return _throughput(ctx, "e", "Anthropic client over an OpenAI upstream (translation)", "/v1/messages",
                       anthropic_body(), True, ctx.all_targets, sample_rss=False)


def scenario_responses(ctx: Ctx) -> dict:
    say("(g) Responses API client (Codex, the AI SDK), OpenAI chat upstream (translation)")
    return _throughput(ctx, "g", "Responses client over an OpenAI chat upstream (translation)", "/v1/responses",
                       responses_body(), False, ctx.all_targets, sample_rss=False)


# ---- (c) streaming ----------------------------------------------------------------------------

STREAM_METRICS = {"ttft_p50_ms": (("ttft", "p50_us"), 1e-3), "ttft_p99_ms": (("ttft", "p99_us"), 1e-3),
                  "gap_p50_ms": (("gap", "p50_us"), 1e-3), "gap_p99_ms": (("gap", "p99_us"), 1e-3),
                  "gap_mean_ms": (("gap", "mean_us"), 1e-3), "streams_per_s": (("streams_per_s",), 1.0),
                  "stalls": (("stalls",), 1.0), "incomplete": (("incomplete",), 1.0)}


def scenario_streaming(ctx: Ctx) -> dict:
    s = ctx.mock_settings
    say(f"(c) streaming: {STREAMS} concurrent streams, {s.chunks} chunks {s.gap_ms:g} ms apart")
    body_file = ctx.run_dir / "stream-body.json"
    body_file.write_bytes(openai_body(stream=True))
    # spread stream starts over one stream's length, as independent clients would be
    stagger = s.latency_ms + s.chunks * s.gap_ms

    def run_one(t: Target, duration: float) -> dict:
        return load.run_streams(ctx.exes["stream_client"], t.port, "/v1/chat/completions", body_file,
                                t.openai_headers, STREAMS, duration, stagger)

    notes: list[str] = []
    targets = available(ctx, ctx.all_targets, "/v1/chat/completions", openai_body(stream=True), False, notes)
    results = interleaved(ctx, targets, run_one, "c")
    stream_added = added(results, {k: v for k, v in STREAM_METRICS.items() if k.startswith(("ttft", "gap"))})
    stalled = {n: sum((r.get("stalls", 0) + r.get("incomplete", 0) + r.get("http_errors", 0))
                      if "error" not in r else 1 for r in rounds)
               for n, rounds in results.items()}
    return {"id": "c", "title": "Streaming: added TTFT and inter-chunk gap",
            "params": {"streams": STREAMS, "chunks": s.chunks, "gap_ms": s.gap_ms,
                       "upstream_latency_ms": s.latency_ms, "duration_s": ctx.duration,
                       "rounds": ctx.rounds, "stall_ms": 100},
            "summary": summaries(results, STREAM_METRICS), "added": stream_added,
            "stalled_streams": stalled, "notes": notes, "rounds": results}


# ---- (d) memory ----------------------------------------------------------------------------------

def scenario_memory(ctx: Ctx) -> dict:
    say(f"(d) memory: idle, steady load, {ctx.soak:g} s soak at c={CONCURRENCY}, after load")
    out: dict = {"id": "d", "title": "Memory (RSS of the gateway process tree)",
                 "params": {"soak_s": ctx.soak, "connections": CONCURRENCY}, "targets": {}}
    body = openai_body()
    for t in ctx.gateways:
        if not revive(ctx, t):
            out["targets"][t.name] = {"error": "not running"}
            continue
        headers = dict(t.openai_headers)
        try:
            with alone(ctx, t), load.RssSampler(t, interval=1.0) as sampler:
                res = load.run_wrk(ctx.wrk, f"{t.base}/v1/chat/completions", ctx.script(body, headers),
                                   CONCURRENCY, ctx.soak)
        except Exception as e:
            out["targets"][t.name] = {"error": str(e)[:300], "idle_kb": t.info.get("rss_idle_kb")}
            say(f"  {t.name}: soak failed: {e}")
            revive(ctx, t)
            continue
        settle(t)
        time.sleep(5.0)  # let the event loop go quiet and the allocator return what it will
        after_kb = t.rss_kb()
        g = stats.growth(sampler.samples, ctx.soak)
        steady = max(ctx.steady_rss.get(t.name, 0), sampler.max_kb)
        entry = {"idle_kb": t.info.get("rss_idle_kb"), "steady_kb": steady, "soak": g,
                 "soak_rps": res["rps"], "soak_errors": res["error_count"], "after_kb": after_kb,
                 "samples": sampler.samples}
        out["targets"][t.name] = entry
        say(f"  {t.name:<10} idle {_mb(entry['idle_kb'])}  steady {_mb(steady)}  "
            f"soak growth {_mb(g['growth_kb'])} ({res['rps']:.0f} req/s, {res['error_count']} errors)  "
            f"after {_mb(after_kb)}")
    return out


def _mb(kb) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.1f} MB"


# ---- (f) distributed mode ------------------------------------------------------------------------

def scenario_distributed(ctx: Ctx) -> dict:
    say("(f) distributed mode: Redis limits + Postgres ledger")
    out = {"id": "f", "title": "Distributed mode (Redis limits + Postgres ledger) throughput"}
    from . import tools
    redis_exe, pg_bin = tools.redis_server(), tools.postgres_bin()
    if redis_exe is None or pg_bin is None:
        missing = ("redis-server (`make services` installs it)" if redis_exe is None
                   else "Postgres 15 binaries at /usr/lib/postgresql/15/bin")
        out["skipped"] = f"not available yet: {missing} not found"
        say(f"  skipped: {out['skipped']}")
        return out
    started: list[Proc] = []
    pg_dir = None
    gh = None
    try:
        redis_proc, redis_url = tg.start_redis(redis_exe, ctx.run_dir)
        started.append(redis_proc)
        pg_proc, pg_url = tg.start_postgres(pg_bin, ctx.run_dir)
        started.append(pg_proc)
        pg_dir = getattr(pg_proc, "info_dir", None)
        try:
            gh = tg.start_gatehouse(ctx.mock, ctx.run_dir, name="gatehouse-distributed",
                                    store_url=pg_url, redis_url=redis_url)
        except tg.StartError as e:
            out["skipped"] = "not available yet: the gateway did not start with a Postgres store and Redis"
            out["log_tail"] = str(e)[-2000:]
            say(f"  skipped: {out['skipped']}\n    " + str(e).strip().splitlines()[-1][:300])
            return out
        ctx.extra_gateways.append(gh)
        res = _throughput(ctx, "f", out["title"], "/v1/chat/completions", openai_body(), False,
                          [ctx.mock, gh], sample_rss=False)
        res["params"]["store"] = "postgresql (initdb'd, loopback)"
        res["params"]["redis"] = "redis-server (loopback, no persistence)"
        return res
    except tg.StartError as e:
        out["skipped"] = f"not available yet: {str(e).splitlines()[0]}"
        say(f"  skipped: {out['skipped']}")
        return out
    finally:
        if gh is not None:
            ctx.extra_gateways[:] = [g for g in ctx.extra_gateways if g is not gh]
        if gh is not None and gh.proc is not None:
            gh.proc.stop()
        for p in reversed(started):
            p.stop(sig=signal.SIGINT if p.name == "postgres" else signal.SIGTERM)
        if pg_dir is not None:
            shutil.rmtree(pg_dir, ignore_errors=True)


# ---- scenarios (h)-(j): the plain gateway against a second one, interleaved -------------------

@contextlib.contextmanager
def _second_gateway(ctx: Ctx, out: dict, name: str, why: str, **start_kw) -> Iterator[tuple[Target, Target] | None]:
    """The plain gateway and one more started with `start_kw`, stopped afterwards; None (with
    out["skipped"] set) when either is not there."""
    plain = next((g for g in ctx.gateways if g.name == "gatehouse"), None)
    if plain is None:
        out["skipped"] = "Gatehouse is not running"
        yield None
        return
    try:
        gh = tg.start_gatehouse(ctx.mock, ctx.run_dir, name=name, **start_kw)
    except tg.StartError as e:
        out["skipped"] = why
        out["log_tail"] = str(e)[-2000:]
        say(f"  skipped: {why}\n    " + (str(e).strip().splitlines() or [""])[-1][:300])
        yield None
        return
    ctx.extra_gateways.append(gh)
    try:
        yield plain, gh
    finally:
        ctx.extra_gateways[:] = [g for g in ctx.extra_gateways if g is not gh]
        if gh.proc is not None:
            gh.proc.stop()


# ---- (h) guardrails on vs off ----------------------------------------------------------------

GUARDRAILS_POLICY = "ecommerce"  # examples/guardrails-ecommerce.yaml


def scenario_guardrails(ctx: Ctx) -> dict:
    """As (b), Gatehouse only: the same gateway config with and without the e-commerce policy
    (examples/guardrails-ecommerce.yaml) on the bench group, interleaved in the same rounds."""
    say(f"(h) guardrails: the '{GUARDRAILS_POLICY}' policy on vs off, c={CONCURRENCY}")
    title = f"Guardrails ({GUARDRAILS_POLICY} policy) on vs off, throughput"
    out: dict = {"id": "h", "title": title}
    with _second_gateway(ctx, out, "gatehouse-guardrails",
                         "not available yet: the gateway did not start with the guardrails policy",
                         guardrails=GUARDRAILS_POLICY) as pair:
        if pair is None:
            return out
        plain, gh = pair
        res = _throughput(ctx, "h", title, "/v1/chat/completions", openai_body(), False,
                          [ctx.mock, plain, gh], sample_rss=False)
        res["params"]["guardrails"] = f"{GUARDRAILS_POLICY} (examples/guardrails-ecommerce.yaml)"
        on = stats.median((res["best"].get(gh.name) or {}).get("rps"))
        off = stats.median((res["best"].get(plain.name) or {}).get("rps"))
        res["guardrails_ratio"] = stats.ratio(on, off)
        # the same closed loop for both (no p99 limit, no pacing): the plain capacity ratio
        res["guardrails_closed_loop_ratio"] = stats.ratio(stats.median(res["summary"][gh.name]["rps"]),
                                                          stats.median(res["summary"][plain.name]["rps"]))
        say(f"  guardrails on / off: {on or 0:.0f} / {off or 0:.0f} req/s = {res['guardrails_ratio'] or 0:.3f}"
            f" (closed loop: {res['guardrails_closed_loop_ratio'] or 0:.3f})")
        return res


# ---- (i) serve --workers 2 vs one worker ------------------------------------------------------

WORKERS = 2


def scenario_workers(ctx: Ctx) -> dict:
    """As (b), Gatehouse only: `serve --workers 2` (both cores, shared with wrk and the mock on
    core 1) against the usual one worker on core 0, interleaved in the same rounds. The ratio
    is of closed-loop throughput at c=64 (no p99 limit): what the second core adds."""
    say(f"(i) workers: serve --workers {WORKERS} vs one worker, c={CONCURRENCY}")
    title = f"serve --workers {WORKERS} vs one worker, throughput"
    out: dict = {"id": "i", "title": title}
    with _second_gateway(ctx, out, "gatehouse-workers", "the gateway did not start with --workers",
                         workers=WORKERS) as pair:
        if pair is None:
            return out
        plain, gh = pair
        res = _throughput(ctx, "i", title, "/v1/chat/completions", openai_body(), False,
                          [ctx.mock, plain, gh], sample_rss=False)
        res["params"]["workers"] = WORKERS
        res["workers_ratio"] = stats.ratio(stats.median(res["summary"][gh.name]["rps"]),
                                           stats.median(res["summary"][plain.name]["rps"]))
        say(f"  {WORKERS} workers / 1 worker, closed loop: {res['workers_ratio'] or 0:.3f}")
        return res


# ---- (j) response cache hits vs uncached -------------------------------------------------------


def cached_body() -> bytes:
    """openai_body at temperature 0: what a cache may answer (docs/cache.md)."""
    body = json.loads(openai_body())
    body["temperature"] = 0
    return json.dumps(body).encode()


def scenario_cache(ctx: Ctx) -> dict:
    """Gatehouse only: the same temperature-0 request through the plain gateway (every request
    goes upstream) and through one whose model has an in-process `cache:` block (every request
    after the first is a hit), interleaved in the same rounds: throughput at c=64 and the added
    latency at c=1."""
    say(f"(j) response cache: in-process hits vs uncached, c={CONCURRENCY} and c=1")
    title = "Response cache (in-process) hits vs uncached"
    out: dict = {"id": "j", "title": title}
    with _second_gateway(ctx, out, "gatehouse-cache", "the gateway did not start with a cache block",
                         cache={"ttl_seconds": 3600, "backend": "memory"}) as pair:
        if pair is None:
            return out
        plain, gh = pair
        body = cached_body()
        res = _throughput(ctx, "j", title, "/v1/chat/completions", body, False, [ctx.mock, plain, gh],
                          sample_rss=False)
        res["params"]["cache"] = "memory, ttl 3600 s, temperature-0 body"
        res["cache_closed_loop_ratio"] = stats.ratio(stats.median(res["summary"][gh.name]["rps"]),
                                                     stats.median(res["summary"][plain.name]["rps"]))
        run = wrk_runner(ctx, "/v1/chat/completions", body, 1)
        lat = interleaved(ctx, available(ctx, [ctx.mock, plain, gh], "/v1/chat/completions", body, False, []),
                          run, "j")
        res["latency_c1"] = {"summary": summaries(lat, LAT_METRICS),
                             "added": added(lat, {k: v for k, v in LAT_METRICS.items() if k != "rps"})}
        say(f"  cached / uncached at c={CONCURRENCY}: {res['cache_closed_loop_ratio'] or 0:.2f}x (closed loop)")
        return res


# ---- (k) tracing on vs off ---------------------------------------------------------------------

TRACING_PROTOCOLS = ("http/protobuf", "http/json", "grpc")


def scenario_tracing(ctx: Ctx) -> dict:
    """As (b), Gatehouse only: the same gateway without tracing and with tracing on, every
    request sampled (wrk sends no traceparent: each request is a new, kept trace), one gateway
    per OTLP protocol, exporting to bench/otlp_sink.py on the load core; interleaved rounds."""
    say(f"(k) tracing: every request traced ({', '.join(TRACING_PROTOCOLS)}) vs off, c={CONCURRENCY}")
    title = "Tracing on (every request sampled) vs off, throughput"
    out: dict = {"id": "k", "title": title}
    plain = next((g for g in ctx.gateways if g.name == "gatehouse"), None)
    if plain is None:
        out["skipped"] = "Gatehouse is not running"
        return out
    sink = None
    traced: list[Target] = []
    try:
        try:
            sink, http_port, grpc_port = tg.start_otlp_sink(ctx.run_dir)
            for protocol in TRACING_PROTOCOLS:
                endpoint = (f"http://127.0.0.1:{grpc_port}" if protocol == "grpc"
                            else f"http://127.0.0.1:{http_port}/v1/traces")
                traced.append(tg.start_gatehouse(
                    ctx.mock, ctx.run_dir, name=f"gatehouse-trace-{protocol.replace('/', '-')}",
                    tracing={"enabled": True, "protocol": protocol, "endpoint": endpoint}))
                ctx.extra_gateways.append(traced[-1])
        except tg.StartError as e:
            out["skipped"] = "not available yet: a traced gateway or the OTLP sink did not start"
            out["log_tail"] = str(e)[-2000:]
            say(f"  skipped: {out['skipped']}\n    " + str(e).strip().splitlines()[-1][:300])
            return out
        res = _throughput(ctx, "k", title, "/v1/chat/completions", openai_body(), False,
                          [ctx.mock, plain, *traced], sample_rss=False, pace=False, run=cpu_counting(ctx))
        res["tracing"] = {}
        for t in traced:
            entry = {**paired(res, t, plain),
                     # the gateway warns when its span queue overflowed or an export failed
                     "export_warnings": [ln for ln in t.proc.log_tail(200).splitlines() if "tracing:" in ln][:5]
                     if t.proc is not None else []}
            res["tracing"][t.name] = entry
            say(f"  {t.name} ÷ off, paired per round: closed-loop throughput {entry['closed_loop_ratio'] or 0:.3f},"
                f" 1 / CPU per request {entry['cpu_ratio'] or 0:.3f} ({entry['cpu_us_per_request'] or 0:.0f} vs "
                f"{entry['cpu_us_per_request_off'] or 0:.0f} µs)"
                + (f"; warnings: {entry['export_warnings']}" if entry["export_warnings"] else ""))
        for t in traced:
            res["tracing"][t.name]["side_by_side"] = side = beside(ctx, t, plain)
            say(f"  {t.name} ÷ off, side by side: {side_text(side)}")
        status, body = http("GET", f"http://127.0.0.1:{http_port}/stats", timeout=5)
        stats_body = json.loads(body) if status == 200 else {}
        res["sink"] = stats_body
        say(f"  OTLP sink received: {stats_body}")
        return res
    finally:
        for t in traced:
            ctx.extra_gateways[:] = [g for g in ctx.extra_gateways if g is not t]
            if t.proc is not None:
                t.proc.stop()
        if sink is not None:
            sink.stop()



def cpu_counting(ctx: Ctx):
    """wrk at c=64, plus the gateway's CPU seconds per request served: on a shared machine other
    work steals wall time (throughput) far more than it changes CPU time per request, and on a
    saturated core throughput is 1 / CPU per request."""
    wrk = wrk_runner(ctx, "/v1/chat/completions", openai_body(), CONCURRENCY)

    def run(t: Target, duration: float) -> dict:
        before = cpu_seconds(t.proc.pid) if t.proc is not None else 0.0
        res = wrk(t, duration)
        if t.proc is not None and res.get("requests"):
            wait_idle(t.proc)  # its background work for these requests (ledger, trace export) counts too
            res["cpu_us_per_request"] = (cpu_seconds(t.proc.pid) - before) / res["requests"] * 1e6
        return res
    return run


def paired(res: dict, on: Target, off: Target) -> dict:
    """`on` ÷ `off` per round (the same round: the same machine conditions), the median over
    rounds: closed-loop throughput, and 1 / CPU per request (off's CPU ÷ on's)."""
    on_rounds, off_rounds = res["rounds"][on.name], res["rounds"][off.name]
    pairs = list(zip(on_rounds, off_rounds))
    return {"closed_loop_ratio": _mid([stats.ratio(a.get("rps"), b.get("rps")) for a, b in pairs]),
            "cpu_ratio": _mid([stats.ratio(b.get("cpu_us_per_request"), a.get("cpu_us_per_request")) for a, b in pairs]),
            "cpu_us_per_request": _mid([a.get("cpu_us_per_request") for a in on_rounds]),
            "cpu_us_per_request_off": _mid([b.get("cpu_us_per_request") for b in off_rounds])}


def beside(ctx: Ctx, on: Target, off: Target) -> dict:
    """`on` and `off` loaded at the same time, both on the gateway core (harness/together.py):
    their 1 / CPU per request ratio, which the host's drift between rounds does not move."""
    body = openai_body()
    runs = [(t, f"{t.base}/v1/chat/completions", ctx.script(body, dict(t.openai_headers))) for t in (on, off)]
    try:
        with alone(ctx, on, off):
            return together.side_by_side(ctx.wrk, runs[0], runs[1], max(3, ctx.rounds), ctx.duration,
                                         CONCURRENCY, say=say)
    except Exception as e:
        return {"error": str(e)[:500]}


def side_text(side: dict) -> str:
    if side.get("cpu_ratio") is None:
        return f"no figure ({side.get('error', 'no round served requests')})"
    q1, q3 = side["cpu_ratio_quartiles"]
    return (f"1 / CPU per request {side['cpu_ratio']:.3f} (quartiles {q1:.3f}-{q3:.3f}, {len(side['rounds'])} rounds), "
            f"throughput {side['throughput_ratio'] or 0:.3f}" + (f", {side['errors']} errors" if side["errors"] else ""))


def _mid(xs: list) -> float | None:
    xs = sorted(x for x in xs if x is not None)
    return None if not xs else (xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2)


# ---- (l) routing over three deployments -----------------------------------------------------

ROUTING_STRATEGIES = ("least-busy", "prefix-affinity")


def scenario_routing(ctx: Ctx) -> dict:
    """As (b), Gatehouse only: the model served by one deployment vs by three (three providers on
    the same mock) under each of ROUTING_STRATEGIES, interleaved in the same rounds."""
    say(f"(l) routing: one deployment vs three under {', '.join(ROUTING_STRATEGIES)}, c={CONCURRENCY}")
    title = "Routing over three deployments vs one, throughput"
    out: dict = {"id": "l", "title": title}
    plain = next((g for g in ctx.gateways if g.name == "gatehouse"), None)
    if plain is None:
        out["skipped"] = "Gatehouse is not running"
        return out
    pools: list[Target] = []
    try:
        for strategy in ROUTING_STRATEGIES:
            try:
                pools.append(tg.start_gatehouse(ctx.mock, ctx.run_dir, name=f"gatehouse-{strategy}", routing=strategy))
            except tg.StartError as e:
                out["skipped"] = f"the gateway did not start with routing.strategy {strategy}"
                out["log_tail"] = str(e)[-2000:]
                say(f"  skipped: {out['skipped']}")
                return out
        ctx.extra_gateways.extend(pools)
        res = _throughput(ctx, "l", title, "/v1/chat/completions", openai_body(), False,
                          [ctx.mock, plain, *pools], sample_rss=False, run=cpu_counting(ctx))
        one = stats.median((res["best"].get(plain.name) or {}).get("rps"))
        one_closed = stats.median(res["summary"][plain.name]["rps"])
        res["routing_ratio"] = {}
        res["routing_closed_loop_ratio"] = {}
        res["routing_paired"] = {}
        for strategy, g in zip(ROUTING_STRATEGIES, pools):
            three = stats.median((res["best"].get(g.name) or {}).get("rps"))
            res["routing_ratio"][strategy] = stats.ratio(three, one)
            res["routing_closed_loop_ratio"][strategy] = stats.ratio(stats.median(res["summary"][g.name]["rps"]),
                                                                     one_closed)
            res["routing_paired"][strategy] = p = paired(res, g, plain)
            say(f"  {strategy}: three / one deployment {three or 0:.0f} / {one or 0:.0f} req/s = "
                f"{res['routing_ratio'][strategy] or 0:.3f} (closed loop: "
                f"{res['routing_closed_loop_ratio'][strategy] or 0:.3f}; paired per round: 1 / CPU per request "
                f"{p['cpu_ratio'] or 0:.3f} ({p['cpu_us_per_request'] or 0:.0f} vs {p['cpu_us_per_request_off'] or 0:.0f} µs))")
        res["routing_side_by_side"] = {}
        for strategy, g in zip(ROUTING_STRATEGIES, pools):
            res["routing_side_by_side"][strategy] = side = beside(ctx, g, plain)
            say(f"  {strategy}: three ÷ one, side by side: {side_text(side)}")
        return res
    finally:
        ctx.extra_gateways[:] = [g for g in ctx.extra_gateways if g not in pools]
        for g in pools:
            if g.proc is not None:
                g.proc.stop()
