"""Serve an ASGI app with our HTTP/1.1 protocol under uvicorn, in a thread, on a free loopback port."""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from gatehouse.server.protocol import H1Protocol
from tests.upstreams.harness import free_port


@contextlib.contextmanager
def serve_h1(app: Any, http: type[H1Protocol] = H1Protocol, **config: Any) -> Iterator[int]:
    """Yields the port; the server stops when the block ends."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, loop="uvloop", http=http, ws="none",
                                           lifespan="on", log_level="critical", **config))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
