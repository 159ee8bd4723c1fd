"""The round runner shared by the scenarios: the run context, interleaved rounds with a
discarded warm-up, reviving a gateway that died, and summaries over rounds.

Interleaving: every round runs each target once, back to back, in an order that rotates
from round to round, so drift (thermal, other tenants, page cache) lands on all of them.
Added latency is computed per round (target minus direct in the same round), then the
median and min/max over rounds are reported.
"""
from __future__ import annotations

import json
import signal
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import load, procs, stats, targets as tg
from .targets import MockSettings, Target


@dataclass
class Ctx:
    run_dir: Path
    wrk: str
    exes: dict[str, Path]
    mock: Target
    mock_settings: MockSettings
    gateways: list[Target]           # gatehouse and (unless skipped) litellm
    rounds: int = 3
    duration: float = 8.0
    warmup: float = 2.0
    soak: float = 60.0
    litellm_exe: Path | None = None
    capacity: dict = field(default_factory=dict)
    steady_rss: dict = field(default_factory=dict)   # target -> max RSS kB under load
    incidents: list = field(default_factory=list)     # gateways that died mid-run
    scenario: str = ""
    _scripts: int = 0

    extra_gateways: list[Target] = field(default_factory=list)  # started by a scenario (f)

    @property
    def all_targets(self) -> list[Target]:
        return [self.mock, *self.gateways]

    def all_gateways(self) -> list[Target]:
        return [*self.gateways, *self.extra_gateways]

    def script(self, body: bytes, headers: dict[str, str], delay_ms: int | None = None) -> Path:
        self._scripts += 1
        return load.wrk_script(self.run_dir / f"wrk-{self._scripts}.lua", body, headers, delay_ms)


def say(msg: str) -> None:
    print(msg, flush=True)


# ---- request bodies -------------------------------------------------------------------------

PROMPT = "Summarise the benefits of a private LLM gateway in two sentences."


def openai_body(stream: bool = False) -> bytes:
    body = {"model": tg.MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 128}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def anthropic_body(stream: bool = False) -> bytes:
    body = {"model": tg.MODEL, "max_tokens": 128, "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def responses_body() -> bytes:
    return json.dumps({"model": tg.MODEL, "input": PROMPT, "max_output_tokens": 128, "store": False}).encode()


ANTHROPIC_VERSION = {"anthropic-version": "2023-06-01"}


# ---- round runner ----------------------------------------------------------------------------

class MockDied(RuntimeError):
    pass


def check_mock(ctx: Ctx) -> None:
    p = ctx.mock.proc
    if p is not None and not p.alive():
        code = p.popen.returncode if p.popen else None
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        raise MockDied(f"the mock upstream is gone ({how}); its log ends:\n{p.log_tail(5)}")


MAX_RESTARTS = 2


def revive(ctx: Ctx, t: Target) -> bool:
    """If a gateway died, record how (exit status, log tail) and start it again, so one crash
    costs one round rather than the rest of the run. Returns False if it stays down."""
    p = t.proc
    if p is None or p.alive():
        return True
    code = p.popen.returncode if p.popen else None
    how = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
           else f"exit status {code}")
    incident = {"target": t.name, "scenario": ctx.scenario, "how": how, "log_tail": p.log_tail(25)}
    ctx.incidents.append(incident)
    say(f"  !! {t.name} died during ({ctx.scenario}): {how}; its log ends:\n"
        + "\n".join("     " + line for line in incident["log_tail"].splitlines()[-8:]))
    restart = t.info.get("restart")
    if restart is None or sum(1 for i in ctx.incidents if i["target"] == t.name) > MAX_RESTARTS:
        return False
    try:
        fresh = restart()
    except Exception as e:
        incident["restart"] = f"failed: {str(e)[:300]}"
        say(f"  !! restarting {t.name} failed: {e}")
        return False
    t.port, t.proc = fresh.port, fresh.proc
    incident["restart"] = "restarted (later figures come from a fresh process)"
    say(f"  !! {t.name} restarted")
    return True


@contextmanager
def alone(ctx: Ctx, *measured: Target | None):
    """While `measured` (one gateway, or two side by side) are measured, every other gateway is
    stopped (SIGSTOP), so that those under load have the pinned gateway core to themselves: an
    idle LiteLLM still runs background tasks there, which showed up in Gatehouse's p99, and the
    other way round."""
    others = [g for g in ctx.all_gateways()
              if all(g is not t for t in measured) and g.proc is not None and g.proc.alive()]
    for g in others:
        g.proc.pause()  # type: ignore[union-attr]
    try:
        yield
    finally:
        for g in others:
            g.proc.resume()  # type: ignore[union-attr]


def interleaved(ctx: Ctx, targets: list[Target], run_one, label: str) -> dict[str, list[dict]]:
    """Warm up each target, then `ctx.rounds` rounds over all of them in rotating order."""
    check_mock(ctx)
    results: dict[str, list[dict]] = {t.name: [] for t in targets}
    for t in targets:
        try:
            with alone(ctx, t):
                run_one(t, ctx.warmup)
        except Exception as e:
            say(f"  {label}: warm-up on {t.name} failed: {e}")
        revive(ctx, t)
        settle(t)
    for r in range(ctx.rounds):
        order = targets[r % len(targets):] + targets[:r % len(targets)]
        for t in order:
            try:
                with alone(ctx, t):
                    res = run_one(t, ctx.duration)
            except Exception as e:
                check_mock(ctx)
                res = {"error": str(e)[:500]}
            if t.proc is not None and not t.proc.alive():
                res = {**res, "error": res.get("error") or "the gateway died during this run"}
                revive(ctx, t)
            results[t.name].append(res)
            say(f"  {label} round {r + 1}/{ctx.rounds} {t.name:<10} {brief(res)}")
            settle(t)
    return results


def settle(t: Target) -> None:
    waited = procs.wait_idle(t.proc)
    if waited > 5:
        say(f"  ({t.name} needed {waited:.0f} s to work off its backlog)")


def available(ctx: Ctx, targets: list[Target], path: str, body: bytes, anthropic: bool,
              notes: list[str]) -> list[Target]:
    """The targets that answer this route with 200 now; the others are left out with a note
    (a gateway still being written may not have every route yet)."""
    ok = []
    for t in targets:
        headers = {"Content-Type": "application/json",
                   **({**t.anthropic_headers, **ANTHROPIC_VERSION} if anthropic else t.openai_headers)}
        try:
            status, payload = procs.http("POST", f"{t.base}{path}", body, headers, timeout=60)
        except OSError as e:
            status, payload = 0, str(e).encode()
        if status == 200:
            ok.append(t)
        else:
            note = f"{t.name}: not available yet: POST {path} answered {status} {payload[:160]!r}"
            notes.append(note)
            say(f"  left out: {note}")
    return ok


def brief(res: dict) -> str:
    if "error" in res:
        return f"ERROR {res['error'][:120]}"
    if "latency_us" in res:
        lat = res["latency_us"]
        return (f"{res['rps']:9.0f} req/s  p50 {lat['p50'] / 1000:7.3f} ms  p99 {lat['p99'] / 1000:7.3f} ms"
                f"  errors {res['error_count']}")
    if "ttft" in res:
        tt, gp = res["ttft"], res["gap"]
        return (f"{res['streams_ok']} streams  ttft p50 {tt.get('p50_us', 0) / 1000:.3f} "
                f"p99 {tt.get('p99_us', 0) / 1000:.3f} ms  gap p50 {gp.get('p50_us', 0) / 1000:.3f} "
                f"p99 {gp.get('p99_us', 0) / 1000:.3f} ms  stalls {res['stalls']}  "
                f"incomplete {res['incomplete']}")
    return str(res)[:120]


def field_of(rounds: list[dict], *path, scale: float = 1.0) -> list:
    out = []
    for r in rounds:
        v = r
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        out.append(None if v is None else v * scale)
    return out


def wrk_runner(ctx: Ctx, path: str, body: bytes, connections: int, anthropic: bool = False,
               sample_rss: bool = False):
    def run_one(t: Target, duration: float) -> dict:
        headers = {**t.anthropic_headers, **ANTHROPIC_VERSION} if anthropic else dict(t.openai_headers)
        script = ctx.script(body, headers)
        with load.RssSampler(t) as sampler:
            res = load.run_wrk(ctx.wrk, f"{t.base}{path}", script, connections, duration)
        if sample_rss and t.proc is not None:
            res["rss_max_kb"] = sampler.max_kb
            ctx.steady_rss[t.name] = max(ctx.steady_rss.get(t.name, 0), sampler.max_kb)
        return res
    return run_one


def summaries(results: dict[str, list[dict]], metrics: dict[str, tuple]) -> dict:
    out = {}
    for name, rounds in results.items():
        out[name] = {m: stats.spread(field_of(rounds, *spec[0], scale=spec[1])) for m, spec in metrics.items()}
    return out


def added(results: dict[str, list[dict]], metrics: dict[str, tuple]) -> dict:
    base = results["direct"]
    out = {}
    for name, rounds in results.items():
        if name == "direct":
            continue
        out[name] = {m: stats.spread(stats.paired(field_of(rounds, *spec[0], scale=spec[1]),
                                                  field_of(base, *spec[0], scale=spec[1])))
                     for m, spec in metrics.items()}
    return out


def errors(rounds: list[dict]) -> int:
    return sum(r.get("error_count", 0) for r in rounds) + sum(1 for r in rounds if "error" in r)
