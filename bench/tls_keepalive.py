"""Plain HTTP vs HTTPS keep-alive throughput of one gateway process (issue 26): a rough,
short closed loop, not part of `make bench`.

    PYTHONPATH=src .venv/bin/python bench/tls_keepalive.py [--seconds 5] [--connections 16] [--rounds 3]

Starts `gatehouse serve` twice (plain, then server.tls with a throwaway CA), pinned to core 0
when the machine has two or more cores; the client (asyncio + uvloop, raw sockets, one
keep-alive connection per client, request then response) runs on the other cores. Each
connection does its TLS handshake once, before the clock starts. Prints requests/s and the
gateway's CPU time per request (user + system, from /proc: steadier than throughput on a
shared machine) per round, and the medians, for `GET /healthz` and `POST /v1/chat/completions`
to the built-in echo model (key auth, limits, metering: the whole default pipeline).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
KEY = "bench-key-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(home: Path, tls: dict[str, str] | None) -> tuple[subprocess.Popen[bytes], int]:
    import yaml

    port = free_port()
    cfg = {"server": {"tls": tls} if tls else {}, "logging": {"level": "warning", "access_log": False},
           "providers": {"echo": {"type": "echo"}}, "models": [{"name": "echo", "deployments": [
               {"provider": "echo", "model": "echo"}]}],
           "groups": {"g": {"models": ["*"]}}, "consumers": {"b": {"group": "g", "keys": [KEY]}},
           "pricing": {"unpriced": "allow"}}
    path = home / f"cfg-{port}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    pin = ["taskset", "-c", "0"] if (os.cpu_count() or 1) > 1 else []
    proc = subprocess.Popen([*pin, sys.executable, "-m", "gatehouse", "serve", "--config", str(path), "--port",
                             str(port)], env={**os.environ, "GATEHOUSE_HOME": str(home)}, cwd=home,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("gatehouse did not start")


async def _client(port: int, ctx: ssl.SSLContext | None, request: bytes, stop: list[float], counts: list[int],
                  ready: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                   server_hostname="localhost" if ctx else None)
    await ready.wait()
    n = 0
    while time.monotonic() < stop[0]:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        i = head.lower().index(b"content-length:")
        await reader.readexactly(int(head[i + 15:head.index(b"\r\n", i)]))
        n += 1
    counts.append(n)
    writer.close()


async def measure(port: int, ctx: ssl.SSLContext | None, request: bytes, connections: int, seconds: float) -> float:
    counts: list[int] = []
    stop = [float("inf")]
    ready = asyncio.Event()
    tasks = [asyncio.create_task(_client(port, ctx, request, stop, counts, ready)) for _ in range(connections)]
    await asyncio.sleep(0.5)  # connections (and handshakes) made
    stop[0] = time.monotonic() + seconds
    ready.set()
    await asyncio.gather(*tasks)
    return sum(counts) / seconds


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import uvloop

    from tests.tls_certs import TestCA

    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, set(range(1, os.cpu_count() or 2)))
    body = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hello there"}]}).encode()
    requests = {
        "GET /healthz": b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /v1/chat/completions (echo)": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + KEY.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body),
    }
    with tempfile.TemporaryDirectory() as d:
        home = Path(d)
        ca = TestCA(home / "pki")
        cert, key = ca.issue("gateway")
        ctx = ssl.create_default_context(cafile=str(ca.pem))
        results: dict[str, dict[str, list[float]]] = {name: {"http": [], "https": []} for name in requests}
        cpu: dict[str, dict[str, list[float]]] = {name: {"http": [], "https": []} for name in requests}
        for _ in range(args.rounds):
            for scheme in ("http", "https"):
                proc, port = start(home, {"cert_file": str(cert), "key_file": str(key)} if scheme == "https" else None)
                try:
                    for name, req in requests.items():
                        before = cpu_seconds(proc.pid)
                        rps = uvloop.run(measure(port, ctx if scheme == "https" else None, req, args.connections,
                                                 args.seconds))
                        us = (cpu_seconds(proc.pid) - before) / (rps * args.seconds) * 1e6
                        results[name][scheme].append(rps)
                        cpu[name][scheme].append(us)
                        print(f"{name:36} {scheme:5} {rps:8.0f} req/s {us:7.1f} us CPU/request", flush=True)
                finally:
                    proc.terminate()
                    proc.wait(20)
        for name, r in results.items():
            plain, tls = statistics.median(r["http"]), statistics.median(r["https"])
            print(f"median {name:36} http {plain:7.0f}  https {tls:7.0f}  https/http {tls / plain:.2f}")
            c_plain, c_tls = statistics.median(cpu[name]["http"]), statistics.median(cpu[name]["https"])
            print(f"median {name:36} CPU/request http {c_plain:.1f} us  https {c_tls:.1f} us  "
                  f"(https throughput at equal CPU: {c_plain / c_tls:.2f} of http)")


if __name__ == "__main__":
    main()
