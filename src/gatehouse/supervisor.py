"""`gatehouse serve --workers N`: N worker processes serving one port (docs/operations.md#workers).

Why processes: one Python process serves on one core (the GIL); a 4-vCPU pod or an 8-core
laptop would run at a fraction of its capacity. The parent forks N workers after the config is
loaded and the store migrated (once, not N times racing); each worker runs the whole gateway
(its own event loop, runtime, upstream pools) on its own listening socket bound with
SO_REUSEPORT, so the kernel spreads new connections over the workers without a shared accept
queue (a shared socket let one uvloop worker accept most connections of a burst).

What each worker keeps to itself, and how that stays correct:
- the ledger journal: worker 0 uses the configured journal directory, worker i the
  subdirectory `worker-<i>`; a worker restarted after a crash replays its own directory, and at
  start the parent moves the segments of directories no worker owns any more (fewer workers
  than last time) into worker 0's, which replays them like its own (records are idempotent
  on their id, so nothing is lost or counted twice).
- limits: counted in Redis when `store.redis_url` is set (exact across workers and replicas).
  Without Redis each worker counts alone, so each enforces its share of every limit (the limit
  divided by the workers, rounded up: store/limiter_shared.py), the rule a replica follows while
  Redis is down. Never more than the limit in total, but a client whose requests all land on
  one worker (one keep-alive connection) gets only that share: set store.redis_url.
- metrics: each worker answers /metrics with every worker's series, labelled `worker`
  (observability/worker_metrics.py), so a scrape that lands on any worker sees all of them.
- reload: SIGHUP to the parent is forwarded to every worker; POST /admin/reload on one worker
  asks the parent (SIGUSR1) to forward SIGHUP to the others.

The parent restarts a worker that dies (SIGKILL, OOM) with the same index, so its journal
is replayed; one that dies within a second of starting five times in a row (a port in use, a
broken config) stops the whole server with its exit code. SIGTERM/SIGINT to the parent are
forwarded and each worker shuts down gracefully (draining, finishing streams); the parent
exits 0 once all have. If the parent itself is killed, each worker gets SIGTERM from the
kernel (PR_SET_PDEATHSIG) and shuts down the same way.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import logging
import math
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from gatehouse.config import Config, ConfigError

log = logging.getLogger("gatehouse.supervisor")

WORKER_INDEX_ENV = "GATEHOUSE_WORKER_INDEX"
WORKERS_ENV = "GATEHOUSE_WORKERS"
RELOAD_ORIGIN = "reload-origin"  # in the run directory: which worker asked for a reload broadcast
FAST_FAILURE_SECONDS = 1.0
FAST_FAILURES_TO_GIVE_UP = 5
PR_SET_PDEATHSIG = 1


def usable_cpus() -> int:
    """CPUs this process may use, container-aware: the affinity mask, capped by a cgroup v2
    (`cpu.max`) or v1 (`cfs_quota_us`/`cfs_period_us`) quota, rounded up, at least 1."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def _cgroup_quota() -> float | None:
    try:
        parts = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if parts and parts[0] != "max":
            return int(parts[0]) / int(parts[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        p = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return q / p if q > 0 and p > 0 else None
    except (OSError, ValueError):
        return None


def parse_workers(value: str | None) -> int:
    """`--workers` (or $GATEHOUSE_WORKERS): a positive number or `auto` (usable CPUs). Unset: 1,
    so that a plain `gatehouse serve` keeps in-memory limits exact and uses one journal."""
    if value is None or value == "":
        return 1
    if value == "auto":
        return usable_cpus()
    if not re.fullmatch(r"[0-9]{1,4}", value) or int(value) < 1:
        raise ConfigError(f"--workers: expected a positive number or 'auto', got '{value[:20]}'")
    return int(value)


def worker_cpus(workers: int) -> list[int] | None:
    """The CPU each worker is pinned to, or None to leave placement to the scheduler.

    Pinned only when the process may run on exactly as many CPUs as there are workers (`--workers
    auto` on a machine or an exclusive cpuset, e.g. Kubernetes' static CPU manager): each worker
    then keeps its core's caches and never queues behind a sibling that the scheduler put on the
    same core. Under a CFS quota on a larger node (the usual pod) the mask is the whole node and
    nothing is pinned: the quota is time, not cores."""
    if not hasattr(os, "sched_getaffinity") or workers < 2:
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return cpus if len(cpus) == workers else None


def _pin_to(cpu: int) -> None:
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as e:  # a mask changed under us: run unpinned rather than not at all
        log.warning("could not pin the worker to CPU %d: %s", cpu, e.strerror)


def worker_index() -> int:
    """This process's worker index (0 when not started by a supervisor)."""
    try:
        return int(os.environ.get(WORKER_INDEX_ENV, "0"))
    except ValueError:
        return 0


def worker_count() -> int:
    try:
        return max(1, int(os.environ.get(WORKERS_ENV, "1")))
    except ValueError:
        return 1


def journal_base(cfg: Config, data_dir: Path) -> Path:
    return Path(cfg.metering.journal_dir) if cfg.metering.journal_dir else data_dir / "journal"


def journal_dir_for(base: Path, index: int) -> Path:
    """Worker 0 keeps the configured journal directory (so `--workers 1` and no flag are the
    same layout); worker i uses `worker-<i>` inside it."""
    return base if index == 0 else base / f"worker-{index}"


def adopt_orphan_journals(base: Path, workers: int) -> int:
    """Move the segments of `worker-<i>` directories with i >= workers (left by a run with more
    workers) into `base`, numbered after its own, so worker 0 replays them. Returns how many
    segments moved. Each directory is locked while it is emptied, so a process still using it
    (another gateway on the same directory) makes this stop with an error instead."""
    moved = 0
    if not base.is_dir():
        return 0
    for d in sorted(base.glob("worker-*")):
        m = re.fullmatch(r"worker-([0-9]+)", d.name)
        if m is None or int(m.group(1)) < workers or not d.is_dir():
            continue
        fd = os.open(d / "journal.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(f"another gatehouse process is using the journal in {d}") from None
            seqs = [int(p.name[4:-6]) for p in base.glob("seg-*.jsonl")]
            nxt = max(seqs, default=0) + 1
            for seg in sorted(d.glob("seg-*.jsonl"), key=lambda p: int(p.name[4:-6])):
                os.replace(seg, base / f"seg-{nxt:012d}.jsonl")
                nxt += 1
                moved += 1
        finally:
            os.close(fd)
        (d / "journal.lock").unlink(missing_ok=True)
        try:
            d.rmdir()
        except OSError:
            log.warning("journal directory %s is not empty after adopting its segments; left in place", d)
    if moved:
        log.warning("adopted %d journal segments of workers no longer running; worker 0 replays them", moved)
    return moved


def _die_with_parent() -> None:
    """Ask the kernel to send SIGTERM to this worker when the parent dies (Linux)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: an orphaned worker serves on until stopped
        pass


def ask_reload_broadcast(run_dir: Path) -> None:
    """From a worker that reloaded its config (POST /admin/reload): have the parent send SIGHUP
    to every other worker. A no-op for a single process."""
    if worker_count() < 2:
        return
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir / f"{RELOAD_ORIGIN}.{os.getpid()}"
        tmp.write_text(str(worker_index()))
        os.replace(tmp, run_dir / RELOAD_ORIGIN)
        os.kill(os.getppid(), signal.SIGUSR1)
    except OSError as e:  # this worker reloaded; the others still pick up the file on SIGHUP or watch
        log.error("could not ask the other workers to reload: %s", e.strerror)


class Supervisor:
    """Forks `workers` processes running `run_worker(index) -> exit code` and keeps them running."""

    def __init__(self, workers: int, run_worker: Callable[[int], int], run_dir: Path):
        self.workers = workers
        self.run_worker = run_worker
        self.run_dir = run_dir
        self.children: dict[int, int] = {}  # pid -> index
        self.started: dict[int, float] = {}  # index -> monotonic start
        self.fast_failures: dict[int, int] = {}
        self.stopping = False
        self.exit_code = 0
        self.cpus = worker_cpus(workers)

    def _spawn(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                _die_with_parent()
                if self.cpus is not None:
                    _pin_to(self.cpus[index % len(self.cpus)])
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                os.environ[WORKER_INDEX_ENV] = str(index)
                os.environ[WORKERS_ENV] = str(self.workers)
                code = self.run_worker(index)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:  # noqa: B036 - a worker must never return into the parent's loop
                logging.getLogger("gatehouse").exception("worker %d crashed", index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = index
        self.started[index] = time.monotonic()
        try:  # for operators (and tests): which process is which worker
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / f"worker-{index}.pid").write_text(f"{pid}\n")
        except OSError as e:
            log.warning("could not write worker %d's pid file: %s", index, e.strerror)

    def _forward(self, sig: int, exclude: int | None = None) -> None:
        for pid, index in list(self.children.items()):
            if index != exclude:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    def _on_stop(self, sig: int, _frame: FrameType | None) -> None:
        self.stopping = True
        self._forward(sig)

    def _on_hup(self, _sig: int, _frame: FrameType | None) -> None:
        self._forward(signal.SIGHUP)

    def _on_usr1(self, _sig: int, _frame: FrameType | None) -> None:
        try:
            origin: int | None = int((self.run_dir / RELOAD_ORIGIN).read_text())
        except (OSError, ValueError):
            origin = None
        self._forward(signal.SIGHUP, exclude=origin)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGUSR1, self._on_usr1)
        for i in range(self.workers):
            self._spawn(i)
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:  # (PEP 475 retries; kept for clarity)
                continue
            index = self.children.pop(pid, None)
            if index is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                if code not in (0, -signal.SIGTERM, -signal.SIGINT):
                    self.exit_code = self.exit_code or (code if code > 0 else 1)
                continue
            lived = time.monotonic() - self.started.get(index, 0.0)
            self.fast_failures[index] = self.fast_failures.get(index, 0) + 1 if lived < FAST_FAILURE_SECONDS else 0
            if self.fast_failures[index] >= FAST_FAILURES_TO_GIVE_UP:
                log.error("worker %d failed %d times right after starting (exit %s); stopping", index,
                          self.fast_failures[index], code)
                self.stopping = True
                self.exit_code = code if code > 0 else 1
                self._forward(signal.SIGTERM)
                continue
            log.error("worker %d (pid %d) exited with %s; starting it again", index, pid, code)
            self._spawn(index)
        return self.exit_code


def reuseport_socket(host: str, port: int, listen: bool = True) -> socket.socket:
    """A TCP socket bound with SO_REUSEPORT: every worker binds its own, the kernel spreads
    new connections over them (processes of the same user only)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    if listen:
        sock.listen(2048)
        sock.set_inheritable(True)
    return sock


def run_workers(cfg: Config, workers: int, host: str, port: int, data_dir: Path,
                serve: Callable[[int], int]) -> int:
    """The parent of `serve --workers N`: hold the port (bound, not listening, so the kernel
    sends it no connections but nobody else can take it) and fork."""
    try:
        held = reuseport_socket(host, port, listen=False)
    except OSError as e:
        print(f"gatehouse: cannot listen on {host}:{port}: {e.strerror}", file=sys.stderr, flush=True)
        return 1
    try:
        return Supervisor(workers, serve, data_dir / "run").run()
    finally:
        held.close()
