"""Helpers for driving gatehouse (in the test process, or as a real process where the process is
the subject) and real Redis/Postgres servers in tests."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.in_process import ENV, InProcessGatehouse, run_cli
from tests.upstreams.harness import free_port

__all__ = ["Gatehouse", "GatehouseProcess", "InProcessGatehouse", "PostgresServer", "RedisServer", "run_cli",
           "wait_http"]

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


class GatehouseProcess:
    """A real `gatehouse serve` process on a free loopback port. Only for tests whose subject is the
    process (signals, exit status, first-start output): mark them `@pytest.mark.process`."""

    def __init__(self, config: dict[str, Any] | None, home: Path, env: dict[str, str] | None = None,
                 port: int | None = None):
        self.home = home
        self.port = port or free_port()
        self.config = config
        self.config_path: Path | None = None
        self.env = {**ENV.base(), "GATEHOUSE_HOME": str(home), "GATEHOUSE_OLLAMA_URL": "off", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.log_path = home / f"gatehouse-{self.port}.log"
        self.out_path = home / f"gatehouse-{self.port}.out"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        if self.config is not None:
            self.config_path = self.home / f"config-{self.port}.yaml"
            self.config_path.write_text(yaml.safe_dump(self.config))

    def start(self, timeout: float = 30.0) -> GatehouseProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        self.write_config()
        cmd = [sys.executable, "-m", "gatehouse", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        self.proc = subprocess.Popen(cmd, env=self.env, cwd=str(self.home), stdout=open(self.out_path, "ab"),
                                     stderr=open(self.log_path, "ab"))
        try:
            wait_http(self.url + "/healthz", timeout, self.proc)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"gatehouse failed to start:\n{self.logs()}") from None
        return self

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


# What tests get by default: the same interface, served in the test process.
Gatehouse = InProcessGatehouse


class RedisServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="gh-redis-"))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (make test installs it)")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        import socket

        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def restart(self) -> RedisServer:
        """Start again on the same port, empty (as after a crash without persistence)."""
        self.stop()
        return self.start()


class PostgresServer:
    """A throwaway Postgres cluster (initdb) on a free port, run as an unprivileged user when root."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="gh-pg-"))
        self.data = self.dir / "data"
        self.user = "postgres"

    @property
    def url(self) -> str:
        return f"postgresql://gatehouse:gatehouse@127.0.0.1:{self.port}/gatehouse"

    def _run(self, *cmd: str) -> None:
        prefix: list[str] = []
        if os.geteuid() == 0:
            prefix = ["runuser", "-u", self.user, "--"]
        subprocess.run([*prefix, *cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> PostgresServer:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError("Postgres binaries not found at /usr/lib/postgresql/15/bin")
        if os.geteuid() == 0:
            shutil.chown(self.dir, self.user, self.user)
        pwfile = self.dir / "pw"
        pwfile.write_text("gatehouse\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, self.user, self.user)
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "gatehouse", "--pwfile", str(pwfile),
                  "-A", "md5", "--no-sync")
        self.start_server()
        self._run(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "gatehouse", "gatehouse")
        return self

    def start_server(self) -> None:
        env_pw = {"PGPASSWORD": "gatehouse"}
        os.environ.update(env_pw)
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.dir / "log"), "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop_server(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-m", "fast", "stop")

    def stop(self) -> None:
        try:
            self.stop_server()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

def access_log_entry(gh: Any, rid: str, timeout: float = 15.0) -> dict[str, Any]:
    """The one access-log entry of the request sent with x-request-id `rid` (the log is written
    off the event loop: polled for up to `timeout` s)."""
    deadline = time.monotonic() + timeout
    entries: list[dict[str, Any]] = []
    while not entries and time.monotonic() < deadline:
        entries = [json.loads(ln) for ln in gh.logs().splitlines()
                   if ln.startswith("{") and f'"client_request_id":"{rid}"' in ln]
        if not entries:
            time.sleep(0.05)
    [entry] = entries
    return entry


def ledger_rows(home: Path, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The ledger rows, once the writer has stored at least `count`."""
    deadline = time.monotonic() + timeout
    got: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(home / "gatehouse.db") as conn:
                conn.row_factory = sqlite3.Row
                got = [dict(r) for r in conn.execute("SELECT * FROM usage_records ORDER BY ts, attempt")]
        except sqlite3.OperationalError:
            got = []
        if len(got) >= count:
            return got
        time.sleep(0.05)
    return got
