"""Config reload without a restart (docs/operations.md#reload): SIGHUP, POST /admin/reload and,
with `server.reload_watch`, a poll of the file (a Kubernetes ConfigMap update).

A reload reads and validates the file, builds a new Runtime that takes over the live one's
store, key hasher, ledger journal and writer (Runtime.build(previous=...): a journal has one
owner), and swaps it into the app with one attribute assignment. Each request reads
`app.runtime` once when it starts, so requests in flight finish on the old runtime, which is
closed once its last request is done. Anything wrong -- the file, a restart-only setting
changed, the build -- is reported and leaves the live config serving.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections.abc import Callable
from functools import reduce
from pathlib import Path
from typing import Any

from gatehouse.config import Config, ConfigError, load_with_digest
from gatehouse.errors import GatehouseError, InvalidRequest, ServiceUnavailable
from gatehouse.observability.safe import describe
from gatehouse.runtime import Runtime

log = logging.getLogger("gatehouse.reload")

# Settings a running process cannot take on: the listener, the store and the ledger journal
# it owns, the key HMAC secret (stored key hashes depend on it), the metric labels and the tracer
# (shared with the runtime it replaces). A reload changing one is
# refused, naming it; everything else (providers, models, aliases, groups, consumers, limits,
# guardrails, auth, pricing, admin key, UI, CORS, log level, caps) applies.
RESTART_ONLY = ("server.host", "server.port", "server.tls", "server.header_timeout", "server.body_timeout",
                "server.shutdown_grace_seconds", "server.secret", "store", "metering", "metrics.consumer_label",
                "tracing")

_FIELD_PATH = re.compile(r"^[A-Za-z_][\w.\[\]-]*$")


class ReloadRejected(InvalidRequest):
    """The new config is not taken; the live one keeps serving. `param` names the field."""

    code = "config_rejected"


def restart_only_changes(old: Config, new: Config) -> list[str]:
    def get(cfg: Config, dotted: str) -> Any:
        return reduce(getattr, dotted.split("."), cfg)

    return [p for p in RESTART_ONLY if get(old, p) != get(new, p)]


def _field_of(message: str) -> str | None:
    where, sep, _ = message.partition(": ")
    return where if sep and _FIELD_PATH.match(where) else None


def _fingerprint(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)  # follows the ConfigMap's ..data symlink swap
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class ConfigReloader:
    """Reloads the file the process was started with into `swap` (GatehouseApp.swap)."""

    def __init__(self, path: Path, current: Callable[[], Runtime | None], swap: Callable[[Runtime], None]):
        self.path = path
        self._current = current
        self._swap = swap
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watch: asyncio.Task[None] | None = None
        self._seen_sha = ""  # last content tried (live or rejected): the watch retries only a new one

    async def reload(self, source: str) -> Runtime:
        """The new live runtime; raises ReloadRejected (or ServiceUnavailable while starting or
        stopping) with the live config untouched."""
        async with self._lock:
            old = self._current()
            if old is None or old.draining:
                raise ServiceUnavailable("The gateway is starting or shutting down; the config was not reloaded.",
                                         code="draining")
            try:
                try:
                    cfg, sha = await asyncio.to_thread(load_with_digest, self.path)
                except ConfigError as e:
                    raise ReloadRejected(f"{e} (the live config keeps serving)", param=_field_of(str(e))) from None
                self._seen_sha = sha
                changed = restart_only_changes(old.cfg, cfg)
                if changed:
                    raise ReloadRejected(f"{', '.join(changed)}: cannot change on a reload; restart the gateway to "
                                         "apply it (the live config keeps serving)", param=changed[0])
                try:
                    new = await Runtime.build(cfg, previous=old)
                except Exception as e:
                    log.error("config reload: building the new runtime failed: %s", describe(e))
                    raise ReloadRejected(f"the new config could not be started: {describe(e)} "
                                         "(the live config keeps serving)") from None
            except ReloadRejected:
                old.meter.metrics.config_reloads.labels("rejected").inc()
                raise
            new.generation, new.config_sha256, new.reloader = old.generation + 1, sha, self
            new.draining = old.draining  # a SIGTERM that came while it was built still stops the process
            new.activate()
            old.successor = new
            self._swap(new)
            log.warning("config reloaded (%s): generation %d, sha256 %s, %d models", source, new.generation,
                        sha[:12], len(new.models))
            new.meter.metrics.config_reloads.labels("ok").inc()
            return new

    async def reload_logged(self, source: str) -> None:
        """For SIGHUP and the file watch: the outcome goes to the log."""
        try:
            await self.reload(source)
        except GatehouseError as e:
            log.error("config reload (%s) rejected: %s", source, e.message)

    def on_signal(self) -> None:
        self._spawn(self.reload_logged("SIGHUP"))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def start(self, live_sha: str) -> None:
        self._seen_sha = live_sha
        self._watch = asyncio.get_running_loop().create_task(self._watch_loop())

    async def _watch_loop(self) -> None:
        last: tuple[int, int, int] | None = None  # the first look compares the content
        while True:
            rt = self._current()
            server = rt.cfg.server if rt is not None else None
            await asyncio.sleep(server.reload_watch_seconds if server is not None and server.reload_watch else 5.0)
            if server is None or not server.reload_watch:
                continue
            now = await asyncio.to_thread(_fingerprint, self.path)
            if now == last or now is None:
                continue
            last = now
            sha = await asyncio.to_thread(_digest, self.path)
            if sha is not None and sha != self._seen_sha:
                self._seen_sha = sha  # a file that does not load is reported once, not every poll
                await self.reload_logged("file watch")

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
