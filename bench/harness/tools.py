"""What the bench needs besides the gateway: the C programs, wrk, and LiteLLM in its own venv.

Everything is installed on demand, so `make bench` works on a fresh machine.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
BUILD_DIR = BENCH_DIR / "build"
LITELLM_VENV = BENCH_DIR / ".litellm-venv"

# The newest LiteLLM whose pinned dependencies all resolve from the package index this
# machine reaches: 1.106.3 and later (1.108.x, 1.109.x) require certifi>=2026.10.19 and
# 1.109.1 also litellm-proxy-extras==0.4.113, neither of which the index serves yet.
# (1.107.0 was a compromised release and is not on the index at all.)
LITELLM_VERSION = "1.106.2"

C_PROGRAMS = ("mock_upstream", "stream_client")


def log(msg: str) -> None:
    print(msg, flush=True)


def build_c() -> dict[str, Path]:
    """Compile the mock upstream and the stream client into bench/build/ when stale."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise SystemExit("bench: a C compiler (gcc) is needed to build the mock upstream")
    BUILD_DIR.mkdir(exist_ok=True)
    out = {}
    for name in C_PROGRAMS:
        src, exe = BENCH_DIR / f"{name}.c", BUILD_DIR / name
        if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
            log(f"bench: compiling {src.name}")
            subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-o", str(exe), str(src)], check=True)
        out[name] = exe
    return out


def _apt_install(package: str) -> None:
    if os.geteuid() != 0:
        raise SystemExit(f"bench: '{package}' is missing; install it (apt-get install {package})")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log(f"bench: installing {package} with apt-get")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        _apt_install("wrk")
        path = shutil.which("wrk")
    if path is None:
        raise SystemExit("bench: wrk could not be installed")
    return path


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "--version"], capture_output=True, text=True)
    text = (out.stdout or out.stderr or "wrk").splitlines()[0]
    return text.split(" [")[0].strip()  # "wrk 4.1.0 [epoll] Copyright ..." -> "wrk 4.1.0"


def ensure_litellm() -> Path:
    """LiteLLM Proxy, pinned, in bench/.litellm-venv — never in the project's environment."""
    exe = LITELLM_VENV / "bin" / "litellm"
    marker = LITELLM_VENV / f".bench-litellm-{LITELLM_VERSION}"
    if exe.exists() and marker.exists():
        return exe
    log(f"bench: installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} (once)")
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    if not (LITELLM_VENV / "bin" / "python").exists():
        subprocess.run([base_python, "-m", "venv", str(LITELLM_VENV)], check=True)
    pip = [str(LITELLM_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, f"litellm[proxy]=={LITELLM_VERSION}"], check=True)
    for old in LITELLM_VENV.glob(".bench-litellm-*"):
        old.unlink()
    marker.touch()
    return exe


def redis_server() -> str | None:
    return shutil.which("redis-server")


def postgres_bin() -> Path | None:
    for base in (Path("/usr/lib/postgresql/15/bin"),):
        if (base / "initdb").exists() and (base / "postgres").exists():
            return base
    return None
