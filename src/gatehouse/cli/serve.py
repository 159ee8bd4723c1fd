"""`gatehouse serve`: run the gateway under our HTTP/1.1 protocol in uvicorn.

The process-wide settings of a serving gateway live here, not in the app or the library, so
an app served in another process (tests, `gatehouse eval`'s in-process gateway) keeps that
process's settings: the GIL switch interval, the garbage collector's frozen start-up heap and
thresholds, no `*_created` metric series, and a quiet Alembic.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from gatehouse import config as config_mod
from gatehouse.cli.common import WithConfig, base_url, load_config, open_store
from gatehouse.config import Config
from gatehouse.defaults import EMBEDDED_CONSUMER, OPEN_NOTICE
from gatehouse.runtime import data_dir_from_env
from gatehouse.supervisor import (
    WORKERS_ENV,
    adopt_orphan_journals,
    journal_base,
    parse_workers,
    reuseport_socket,
    run_workers,
)

if TYPE_CHECKING:
    from types import FrameType

    from gatehouse.cli.common import Subparsers
    from gatehouse.runtime import Runtime


def add_serve_command(sub: Subparsers, with_config: WithConfig) -> None:
    s = with_config(sub.add_parser("serve", help="run the gateway"))
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", help="worker processes sharing the port: a number or 'auto' (usable CPUs, "
                   "container-aware); default $GATEHOUSE_WORKERS, else 1 (docs/operations.md#workers)")
    s.set_defaults(func=cmd_serve)


def configure_process() -> None:
    """Settings for the whole process, made before the runtime is built."""
    from prometheus_client import disable_created_metrics

    # Alembic announces its context at INFO on every start; only real upgrades are worth a line.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    disable_created_metrics()  # type: ignore[no-untyped-call]  # `*_created` series double the scrape and nobody graphs them


def freeze_startup_heap() -> None:
    """Called by the app once the runtime is built, before it reports the startup complete."""
    # Everything built so far lives as long as the process: move it out of the
    # cyclic GC's sight, so collections only walk per-request garbage (full
    # collections over the loaded libraries were the multi-ms pauses at p99).
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)  # requests make ~100s of short-lived objects


async def _prepare_store(cfg: Config) -> None:
    store, _ = await open_store(cfg)
    await store.close()


async def _first_start_key(cfg: Config, base: str) -> None:
    """On the embedded default's first start, make one key and print it once."""
    from gatehouse.policy.keys import new_key

    store, hasher = await open_store(cfg)
    try:
        if await store.list_keys(EMBEDDED_CONSUMER):
            return
        key = new_key()
        await store.add_key(hasher.record(EMBEDDED_CONSUMER, key, "created on first start"))
    finally:
        await store.close()
    model = cfg.models[0].name
    print(f"""
Gatehouse created an API key for consumer '{EMBEDDED_CONSUMER}'. It is shown only this once:
(Note: {OPEN_NOTICE}.)

    {key}

Try it:

    curl -s {base}/v1/chat/completions \\
      -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
      -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello"}}]}}'

Point OpenAI clients at it:

    export OPENAI_BASE_URL={base}/v1 OPENAI_API_KEY={key}
""", flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gatehouse.app import GatehouseApp
    from gatehouse.runtime import Runtime
    from gatehouse.server import H1Protocol

    configure_process()
    sha = ""
    if args.config:
        cfg, sha = config_mod.load_with_digest(args.config)
    else:
        cfg = load_config(args.config)
    host = args.host or cfg.server.host
    port = args.port or cfg.server.port
    workers = parse_workers(args.workers if args.workers is not None else os.environ.get(WORKERS_ENV))
    logging.basicConfig(level=cfg.logging.level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Journals of workers a previous run had and this one has not: worker 0 replays them.
    adopt_orphan_journals(journal_base(cfg, data_dir_from_env()), workers)
    if not args.config:
        asyncio.run(_first_start_key(cfg, base_url(cfg, host, port)))
    elif workers > 1:  # migrate and make the key secret once, before N workers race to
        asyncio.run(_prepare_store(cfg))

    async def build() -> Runtime:
        return await Runtime.build(cfg)

    app = GatehouseApp(build, cfg.server.cors_origins, Path(args.config).resolve() if args.config else None, sha,
                       on_started=freeze_startup_heap)
    # The event loop thread is the latency-critical one; helper threads (ledger, access log,
    # fsync) only hold the GIL briefly. The default 5 ms switch interval let one of them keep
    # the loop waiting for the GIL that long; 0.5 ms cut the streaming TTFT p99 by about a third.
    sys.setswitchinterval(0.0005)
    tls = None
    if cfg.server.tls is not None:
        from gatehouse.tls import ListenerTls

        tls = ListenerTls(cfg.server.tls)
    server_config = uvicorn.Config(
        app, host=host, port=port, loop="uvloop",
        http=H1Protocol.configured(cfg.server.header_timeout, cfg.server.body_timeout), ws="none",
        lifespan="on", access_log=False, proxy_headers=False, log_level="warning", server_header=False,
        date_header=False,
        timeout_graceful_shutdown=int(cfg.server.shutdown_grace_seconds), timeout_keep_alive=30,
        ssl_context_factory=None if tls is None else (lambda _config, _default: tls.front),
    )

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            rt = app.runtime
            if rt is not None and not rt.draining:
                rt.draining = True  # new requests get 503, /readyz goes red
                if rt.cfg.server.drain_seconds > 0:  # the live config's (a reload may change it)
                    threading.Timer(rt.cfg.server.drain_seconds, super().handle_exit, (sig, frame)).start()
                    return
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises the captured SIGTERM/SIGINT once it has shut down, so a clean,
            # graceful stop would exit 143 (or 130): to supervisors, a crash. It exits 0.
            with super().capture_signals():
                yield
                self._captured_signals.clear()

    if not args.config:
        print(f"gatehouse: {OPEN_NOTICE}", file=sys.stderr, flush=True)
    scheme = "http" if cfg.server.tls is None else "https"
    mutual = ", mutual TLS" if cfg.server.tls is not None and cfg.server.tls.client_ca_file else ""
    shown = f", {workers} workers" if workers > 1 else ""
    print(f"gatehouse listening on {scheme}://{host}:{port} ({len(cfg.models)} models{mutual}{shown})",
          file=sys.stderr, flush=True)

    def serve(sockets: list[socket.socket] | None = None) -> int:
        if tls is not None:
            tls.start_watching()
        try:
            Server(server_config).run(sockets=sockets)
        finally:
            if tls is not None:
                tls.stop()
        return 0

    if workers == 1:
        return serve()
    return run_workers(cfg, workers, host, port, data_dir_from_env(),
                       lambda _index: serve([reuseport_socket(host, port)]))
