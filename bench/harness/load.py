"""Load generators: wrk (with a generated Lua script) for request/response, the C stream
client for SSE. Both run pinned to the load core and report JSON.
"""
from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

from .procs import LOAD_CPU, pinned

# wrk's done() hook prints the summary and latency percentiles as one JSON line.
WRK_LUA = r"""
wrk.method = "POST"
wrk.body = {body}
{headers}
{delay}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}},' ..
    '"latency_us":{{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,' ..
    '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d}}}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
"""


def _lua_str(s: str) -> str:
    return "[==[" + s + "]==]"


def wrk_script(path: Path, body: bytes, headers: dict[str, str], delay_ms: int | None = None) -> Path:
    hdrs = "\n".join(f"wrk.headers[ {_lua_str(k)} ] = {_lua_str(v)}"
                     for k, v in {"Content-Type": "application/json", **headers}.items())
    delay = f"delay = function() return {int(delay_ms)} end" if delay_ms else ""
    path.write_text(WRK_LUA.format(body=_lua_str(body.decode()), headers=hdrs, delay=delay))
    return path


class RssSampler:
    """Samples a target's RSS (process tree, kB) every `interval` seconds in a thread."""

    def __init__(self, target, interval: float = 0.5):
        self.target, self.interval = target, interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - t0, self.target.rss_kb()))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        if self.target.proc is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def max_kb(self) -> int:
        return max((kb for _, kb in self.samples), default=0)


def run_wrk(wrk: str, url: str, script: Path, connections: int, duration: float,
            timeout_s: int = 30) -> dict:
    argv = pinned([wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s",
                   f"--timeout={timeout_s}s", "-s", str(script), url], LOAD_CPU)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + timeout_s + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result (exit {out.returncode}): {out.stderr[-500:]}")
    res = json.loads(line[len("WRKJSON "):])
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6) if res["duration_us"] else 0.0
    res["error_count"] = sum(res["errors"].values())
    res["non2xx"] = res["errors"]["status"]
    return res


def run_streams(exe: Path, port: int, path: str, body_file: Path, headers: dict[str, str],
                concurrency: int, duration: float, stagger_ms: float, stall_ms: float = 100.0,
                grace_s: float = 30.0) -> dict:
    argv = [str(exe), "--port", str(port), "--path", path, "--body-file", str(body_file),
            "--concurrency", str(concurrency), "--duration", str(duration),
            "--stagger-ms", str(stagger_ms), "--stall-ms", str(stall_ms), "--grace", str(grace_s)]
    for k, v in headers.items():
        argv += ["--header", f"{k}: {v}"]
    out = subprocess.run(pinned(argv, LOAD_CPU), capture_output=True, text=True,
                         timeout=duration + grace_s + 60)
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(f"stream_client failed (exit {out.returncode}): {out.stderr[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
