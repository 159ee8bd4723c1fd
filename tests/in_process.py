"""Gatehouse served in the test process, over a real loopback socket, and the CLI called in-process.

`gatehouse serve` started as a subprocess costs about a second per start and per stop, about half
the suite's wall time. Here the same pieces `cli serve` wires together (the config file, Runtime,
GatehouseApp, our H1 protocol under uvicorn, TLS) run in a thread with its own event loop, as
httpx's tests serve theirs. Clients still talk to a real socket. A process is used only where the
process boundary is the subject (tests/support.py GatehouseProcess, `@pytest.mark.process`).

What a process gives for free is made explicit:
- environment: the variables the server reads (GATEHOUSE_*, AWS_*, `${VAR}` in the config) are
  laid over os.environ while the server lives and restored when it stops (EnvOverlays);
- logs: records logged in the server's thread and tasks go to its own log file, the same
  `home/gatehouse-PORT.log` a process writes its stderr to; records from other threads that cannot
  be told apart (ledger writer, exporters) go to every live server's file, except the test's own
  (the main thread, client libraries, the test upstreams' aiohttp servers) (LogRouter);
- the access log is pointed at that file (or at `.out` with `access_log_stream: stdout`).
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import uvicorn
import yaml

from tests.upstreams.harness import free_port

# ---- environment ---------------------------------------------------------------------------------


class EnvOverlays:
    """Layers of environment variables over os.environ; removing a layer restores what it covered,
    in any order (two servers may overlap and stop in either order)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._saved: dict[str, str | None] = {}  # what os.environ held before any layer touched it
        self._layers: dict[int, dict[str, str | None]] = {}  # None: the variable is unset
        self._next = 0

    def push(self, env: dict[str, str]) -> int:
        """Make os.environ equal `env` (set what differs, unset what `env` lacks)."""
        layer: dict[str, str | None] = {k: v for k, v in env.items() if os.environ.get(k) != v}
        layer.update({k: None for k in os.environ if k not in env})
        with self._lock:
            self._next += 1
            self._layers[self._next] = layer
            for name in layer:
                self._saved.setdefault(name, os.environ.get(name))
            self._apply(layer)
            return self._next

    def pop(self, token: int) -> None:
        with self._lock:
            layer = self._layers.pop(token, {})
            for name in layer:
                value = self._saved.get(name)
                for other in self._layers.values():  # a later layer still covering it wins
                    if name in other:
                        value = other[name]
                self._apply({name: value})
                if not any(name in other for other in self._layers.values()):
                    self._saved.pop(name, None)

    @staticmethod
    def _apply(layer: dict[str, str | None]) -> None:
        for name, value in layer.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def base(self) -> dict[str, str]:
        """os.environ as it is without any layer: what a process started now would inherit."""
        with self._lock:
            env = dict(os.environ)
            for name, value in self._saved.items():
                if value is None:
                    env.pop(name, None)
                else:
                    env[name] = value
            return env

    @contextlib.contextmanager
    def applied(self, env: dict[str, str]) -> Iterator[None]:
        token = self.push(env)
        try:
            yield
        finally:
            self.pop(token)


ENV = EnvOverlays()


# ---- logs ----------------------------------------------------------------------------------------

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"  # as `cli serve`'s logging.basicConfig


@dataclass
class LogSink:
    """Where one server's (or one CLI run's) log records go."""

    stream: IO[bytes]
    level: int
    formatter: logging.Formatter
    server: bool = True  # records nobody can attribute go to every live server, never to a CLI run

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= self.level:
            with contextlib.suppress(ValueError, OSError):  # closed after its server stopped
                self.stream.write((self.formatter.format(record) + "\n").encode(errors="replace"))


_SINK: contextvars.ContextVar[LogSink | None] = contextvars.ContextVar("gatehouse_test_log_sink", default=None)


class LogRouter(logging.Handler):
    """One handler on the root and `uvicorn` loggers while any sink is live. The sink of a record
    is the context it was logged in: the server thread sets it before its event loop starts, so
    the loop's tasks and asyncio.to_thread workers inherit it."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self._sinks: list[LogSink] = []
        self._lock_sinks = threading.Lock()
        self._root_level: int | None = None

    def add(self, sink: LogSink) -> None:
        with self._lock_sinks:
            if not self._sinks:
                self._root_level = logging.getLogger().level
                logging.getLogger().addHandler(self)
                logging.getLogger("uvicorn").addHandler(self)
            self._sinks.append(sink)
            root = logging.getLogger()
            root.setLevel(min(root.getEffectiveLevel(), sink.level))

    def remove(self, sink: LogSink) -> None:
        with self._lock_sinks:
            self._sinks = [s for s in self._sinks if s is not sink]
            if not self._sinks:
                logging.getLogger().removeHandler(self)
                logging.getLogger("uvicorn").removeHandler(self)
                if self._root_level is not None:
                    logging.getLogger().setLevel(self._root_level)

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "_gatehouse_routed", False):  # seen on `uvicorn`, again on the root
            return
        record._gatehouse_routed = True
        sink = _SINK.get()
        if sink is not None:
            sink.emit(record)
            return
        if record.threadName == "MainThread" or record.name.startswith(TEST_SIDE_LOGGERS):
            return  # the test's own side: its body, its clients, its upstreams
        for s in list(self._sinks):
            if s.server:
                s.emit(record)


LOGS = LogRouter()
# Loggers of the test's side, never a gatehouse's: the clients tests drive it with, and the aiohttp
# servers the test upstreams run in their threads (gatehouse uses aiohttp only as a client).
TEST_SIDE_LOGGERS = ("httpx", "httpcore", "openai", "anthropic", "ollama", "google_genai", "urllib3",
                     "aiohttp.server", "aiohttp.access", "aiohttp.web")


# ---- the server ----------------------------------------------------------------------------------


class InProcessGatehouse:
    """`gatehouse serve --config FILE` in a thread of the test process, on a free loopback port.

    The interface of tests/support.py GatehouseProcess (url, port, home, config, config_path,
    env, start/stop, logs/output) without `proc`: a test that signals or kills the process
    uses GatehouseProcess."""

    def __init__(self, config: dict[str, Any] | None, home: Path, env: dict[str, str] | None = None,
                 port: int | None = None):
        self.home = home
        self.port = port or free_port()
        self.config = config
        self.config_path: Path | None = None
        self.env = {**ENV.base(), "GATEHOUSE_HOME": str(home), "GATEHOUSE_OLLAMA_URL": "off", **(env or {})}
        self.log_path = home / f"gatehouse-{self.port}.log"
        self.out_path = home / f"gatehouse-{self.port}.out"
        self.app: Any = None  # the GatehouseApp, once started
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._env_token: int | None = None
        self._sink: LogSink | None = None
        self._files: list[IO[bytes]] = []
        self._tls: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        if self.config is not None:
            self.config_path = self.home / f"config-{self.port}.yaml"
            self.config_path.write_text(yaml.safe_dump(self.config))

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def start(self, timeout: float = 30.0) -> InProcessGatehouse:
        self.home.mkdir(parents=True, exist_ok=True)
        self.write_config()
        # Unbuffered appends: the log router, the access log thread and logs() share the files.
        log = open(self.log_path, "ab", buffering=0)
        out = open(self.out_path, "ab", buffering=0)
        self._files = [log, out]
        self._env_token = ENV.push(self.env)
        try:
            self._start(log, out, timeout)
        except Exception as e:
            self.stop()
            raise RuntimeError(f"gatehouse failed to start: {e}\n{self.logs()}") from None
        return self

    def _start(self, log: IO[bytes], out: IO[bytes], timeout: float) -> None:
        from gatehouse import config as config_mod
        from gatehouse.app import GatehouseApp
        from gatehouse.cli.serve import configure_process
        from gatehouse.runtime import Runtime, data_dir_from_env
        from gatehouse.server import H1Protocol

        configure_process()  # what `gatehouse serve` sets process-wide (no *_created series, a quiet Alembic)
        sha = ""
        if self.config_path is not None:
            cfg, sha = config_mod.load_with_digest(str(self.config_path))
        else:
            from gatehouse.defaults import embedded_config

            cfg = embedded_config(data_dir_from_env())
        self._sink = LogSink(log, logging.getLevelName(cfg.logging.level.upper()), logging.Formatter(LOG_FORMAT))
        LOGS.add(self._sink)
        if self.config_path is None:
            from gatehouse.cli.common import base_url
            from gatehouse.cli.serve import _first_start_key
            from gatehouse.defaults import OPEN_NOTICE

            text = io.StringIO()
            with contextlib.redirect_stdout(text):
                asyncio.run(_first_start_key(cfg, base_url(cfg, "127.0.0.1", self.port)))
            out.write(text.getvalue().encode())
            log.write(f"gatehouse: {OPEN_NOTICE}\n".encode())
        data_dir = data_dir_from_env()
        sink = self._sink

        class CapturedApp(GatehouseApp):
            """Every runtime (the first and each reload's) writes its access log to this server's files."""

            def swap(self, new: Runtime) -> None:
                _capture_access_log(new, log, out)
                super().swap(new)

        async def build() -> Runtime:
            rt = await Runtime.build(cfg, data_dir)
            _capture_access_log(rt, log, out)
            return rt

        self.app = app = CapturedApp(build, cfg.server.cors_origins,
                                     self.config_path.resolve() if self.config_path else None, sha)
        tls = None
        if cfg.server.tls is not None:
            from gatehouse.tls import ListenerTls

            tls = self._tls = ListenerTls(cfg.server.tls)
        server = self._server = uvicorn.Server(uvicorn.Config(
            app, host="127.0.0.1", port=self.port, loop="uvloop",
            http=H1Protocol.configured(cfg.server.header_timeout, cfg.server.body_timeout), ws="none",
            lifespan="on", access_log=False, proxy_headers=False, log_level="warning", log_config=None,
            server_header=False, date_header=False, timeout_graceful_shutdown=int(cfg.server.shutdown_grace_seconds),
            timeout_keep_alive=30, ssl_context_factory=None if tls is None else (lambda _c, _d: tls.front)))
        mutual = ", mutual TLS" if cfg.server.tls is not None and cfg.server.tls.client_ca_file else ""
        log.write(f"gatehouse listening on {'http' if tls is None else 'https'}://127.0.0.1:{self.port} "
                  f"({len(cfg.models)} models{mutual})\n".encode())
        if tls is not None:
            tls.start_watching()

        def run() -> None:
            _SINK.set(sink)  # the loop's tasks copy this context
            with contextlib.suppress(SystemExit):  # uvicorn exits 3 when the lifespan startup failed
                server.run()

        self._thread = threading.Thread(target=run, name=f"gatehouse-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server stopped during startup")
            if time.monotonic() > deadline:
                raise RuntimeError(f"not started within {timeout}s")
            time.sleep(0.01)

    def stop(self, sig: int | None = None, timeout: float = 15.0) -> int | None:
        """Stops as SIGTERM would (graceful: requests finish, the journal drains). Returns 0 when it
        stopped in time, as the process's exit status; `sig` is accepted for GatehouseProcess's sake."""
        code: int | None = 0
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(5)
                code = None
        self._server = self._thread = None
        if self._tls is not None:
            self._tls.stop()
            self._tls = None
        if self._sink is not None:
            LOGS.remove(self._sink)
            self._sink = None
        if self._env_token is not None:
            ENV.pop(self._env_token)
            self._env_token = None
        for f in self._files:
            f.close()
        self._files = []
        return code


def _capture_access_log(rt: Any, log: IO[bytes], out: IO[bytes]) -> None:
    access = rt.meter.access_log if rt.meter is not None else None
    if access is not None:
        access._stream = out if rt.cfg.logging.access_log_stream == "stdout" else log


# ---- the CLI -------------------------------------------------------------------------------------


@dataclass
class CliResult:
    """What subprocess.run(capture_output=True, text=True) returned for `gatehouse ...`."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None) -> CliResult:
    """`gatehouse ARGS` through gatehouse.cli.main in this process: stdout and stderr captured, `env`
    (a whole environment, like subprocess's) in os.environ while it runs. Its warnings go to its
    stderr as a process's would (no logging configured: the message only)."""
    from gatehouse.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    errors = _TextSink(stderr)
    sink = LogSink(errors, logging.WARNING, logging.Formatter("%(message)s"), server=False)
    LOGS.add(sink)
    token = _SINK.set(sink)
    try:
        with ENV.applied(env if env is not None else ENV.base()), \
                contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse errors and --help
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if isinstance(e.code, str):
                    stderr.write(e.code + "\n")
            sys.stdout.flush()
    finally:
        _SINK.reset(token)
        LOGS.remove(sink)
    return CliResult(["gatehouse", *args], code, stdout.getvalue(), stderr.getvalue())


class _TextSink(io.RawIOBase):
    """Bytes from a LogSink into a text buffer."""

    def __init__(self, text: io.StringIO):
        super().__init__()
        self._text = text

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self._text.write(bytes(b).decode(errors="replace"))
        return len(b)
