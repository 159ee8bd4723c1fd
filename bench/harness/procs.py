"""Child processes for the bench: started pinned to a core, waited for, measured, always stopped.

Every process the bench starts is registered here and stopped (its whole process group) when
the run ends, however it ends: normally, on an exception, on Ctrl-C or on SIGTERM.
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

# The gateway under test gets core 0 to itself; load generators, the mock upstream and the
# gateway's own backing services (Redis, Postgres) share core 1 (at the default priority: raising
# theirs, so that a gateway worker sharing core 1 in scenario (i) could not delay them, measured
# worse, 1.52 against 1.60, by preempting that worker on every wake-up).
GATEWAY_CPU = "0"
LOAD_CPU = "1"

_live: list[Proc] = []


def can_pin() -> bool:
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def pinned(argv: list[str], cpu: str | None) -> list[str]:
    if cpu is None or not can_pin():
        return list(argv)
    return ["taskset", "-c", cpu, *argv]


class Proc:
    """A long-running child (mock, gateway, LiteLLM, Redis, Postgres) with its log in a file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, cpu: str | None = None,
                 env: dict[str, str] | None = None, cwd: str | Path | None = None):
        self.name = name
        self.argv = pinned(argv, cpu)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        log = open(self.log_path, "ab")
        try:
            self.popen = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, cwd=self.cwd, start_new_session=True,
            )
        finally:
            log.close()
        _live.append(self)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(5)
        else:
            # the leader is gone; make sure nothing it left in its group lingers
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self in _live:
            _live.remove(self)

    def rss_kb(self) -> int:
        return tree_rss_kb(self.pid) if self.alive() else 0

    def pause(self) -> None:
        """SIGSTOP the process group: it keeps its memory and sockets but takes no CPU."""
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)

    def _signal_group(self, sig: int) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, sig)  # type: ignore[union-attr]
            except (ProcessLookupError, PermissionError):
                pass

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def stop_all() -> None:
    for proc in reversed(list(_live)):
        try:
            proc.stop(timeout=5)
        except Exception:
            pass


def _on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def install_cleanup() -> None:
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)


# ---- measurements ------------------------------------------------------------------------

def _status_rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _parent_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: the ppid follows the last ')'
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def tree_rss_kb(pid: int) -> int:
    """RSS of a process and all its descendants (a server that forks workers counts whole)."""
    kids = _parent_map()
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        total += _status_rss_kb(p)
        todo += kids.get(p, [])
    return total


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def wait_idle(proc: Proc | None, max_wait: float = 60.0, busy_below: float = 0.05) -> float:
    """Wait until a server stops burning CPU (a slow one works off its backlog after the
    load generator has gone), so the next run on the shared core starts clean.
    Returns the seconds waited."""
    if proc is None or not proc.alive():
        return 0.0
    t0 = time.monotonic()
    last = cpu_seconds(proc.pid)
    quiet = 0
    while time.monotonic() - t0 < max_wait:
        time.sleep(0.5)
        now = cpu_seconds(proc.pid)
        quiet = quiet + 1 if (now - last) / 0.5 < busy_below else 0
        last = now
        if quiet >= 2:
            break
    return time.monotonic() - t0


# ---- networking helpers -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 10.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_http(url: str, proc: Proc | None, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            return False
        try:
            status, _ = http("GET", url, timeout=2)
            if status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def wait_port(port: int, proc: Proc | None, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            return False
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False
