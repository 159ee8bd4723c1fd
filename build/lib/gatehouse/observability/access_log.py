"""Structured access logs: one JSON line per request on stderr (logger name `gatehouse.access`).

The event loop only encodes the line and appends it to a queue; a background thread wakes
every FLUSH_SECONDS and writes whatever has queued up in one write, so a slow stderr (a full
pipe, a busy log collector) never blocks requests. Waking the thread per line, or building a
`logging` LogRecord per line, would cost more CPU than the rest of metering together. They carry who, which model, what
happened and how long it took; never a body, a prompt, a completion or a key.
"""
from __future__ import annotations

import queue
import sys
import threading
from typing import IO, Any

from gatehouse.types import json_encode

LOGGER = "gatehouse.access"
FLUSH_SECONDS = 0.1


class AccessLog:
    def __init__(self, enabled: bool, stream: IO[bytes] | None = None):
        self.enabled = enabled
        self._queue: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._stream = stream or sys.stderr.buffer
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        if enabled:
            self._thread = threading.Thread(target=self._run, name=LOGGER, daemon=True)
            self._thread.start()

    def write(self, fields: dict[str, Any]) -> None:
        if self.enabled:
            self._queue.put(json_encode(fields) + b"\n")

    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(FLUSH_SECONDS)
            self._flush()
            if stopping:
                return

    def _flush(self) -> None:
        batch: list[bytes] = []
        try:
            while True:
                batch.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        if batch:
            try:
                self._stream.write(b"".join(batch))
                self._stream.flush()
            except (OSError, ValueError):
                pass  # stderr closed or broken: access lines are not worth failing requests for

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()  # the thread writes what is queued, then ends
            self._thread.join(5)
            self._thread = None
