"""Structured access logs: one JSON line per request on stderr, logger `gatehouse.access`.

Lines are handed to a queue and written by a background thread, so a slow stderr (a full
pipe, a busy log collector) never blocks the event loop. They carry who, which model, what
happened and how long it took; never a body, a prompt, a completion or a key.
"""
from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
from typing import Any

from gatehouse.types import json_encode

LOGGER = "gatehouse.access"


class AccessLog:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.logger = logging.getLogger(LOGGER)
        self._handler: logging.Handler | None = None
        self._listener: logging.handlers.QueueListener | None = None
        if enabled:
            q: queue.SimpleQueue = queue.SimpleQueue()
            out = logging.StreamHandler(sys.stderr)
            out.setFormatter(logging.Formatter("%(message)s"))
            self._listener = logging.handlers.QueueListener(q, out)
            self._handler = logging.handlers.QueueHandler(q)
            self.logger.addHandler(self._handler)
            self.logger.setLevel(logging.INFO)
            self.logger.propagate = False  # a JSON line, not the root format around it
            self._listener.start()

    def write(self, fields: dict[str, Any]) -> None:
        if self.enabled:
            self.logger.info(json_encode(fields).decode())

    def close(self) -> None:
        if self._handler is not None:
            self.logger.removeHandler(self._handler)
            self._handler = None
        if self._listener is not None:
            self._listener.stop()  # writes what is queued, then joins the thread
            self._listener = None
