"""The `gatehouse` command: serve | check | keys ...

Every command takes --config FILE; without it, the embedded default under $GATEHOUSE_HOME
(or ./.gatehouse).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from gatehouse import config as config_mod
from gatehouse.config import Config, ConfigError
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

    from gatehouse.cli_admin import Subparsers, WithConfig
    from gatehouse.policy.keys import KeyHasher
    from gatehouse.store.ledger import UsageRow
    from gatehouse.store.sql import SqlStore


def load_config(path: str | None) -> Config:
    if path:
        return config_mod.load(path)
    from gatehouse.defaults import embedded_config

    return embedded_config(data_dir_from_env())


async def _open_store(cfg: Config) -> tuple[SqlStore, KeyHasher]:
    from gatehouse.policy.keys import KeyHasher, new_secret
    from gatehouse.runtime import store_url
    from gatehouse.store.sql import SqlStore, get_or_create_setting

    store = SqlStore(store_url(cfg, data_dir_from_env()))
    await store.create_schema()
    secret = cfg.server.secret or os.environ.get("GATEHOUSE_SECRET") or \
        await get_or_create_setting(store, "key_hmac_secret", new_secret)
    return store, KeyHasher(secret)


async def _prepare_store(cfg: Config) -> None:
    store, _ = await _open_store(cfg)
    await store.close()


def _base_url(cfg: Config, host: str, port: int) -> str:
    if cfg.server.public_url:
        return cfg.server.public_url.rstrip("/")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"{'https' if cfg.server.tls else 'http'}://{shown}:{port}"


async def _first_start_key(cfg: Config, base: str) -> None:
    """On the embedded default's first start, make one key and print it once."""
    from gatehouse.policy.keys import new_key

    store, hasher = await _open_store(cfg)
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
        asyncio.run(_first_start_key(cfg, _base_url(cfg, host, port)))
    elif workers > 1:  # migrate and make the key secret once, before N workers race to
        asyncio.run(_prepare_store(cfg))

    async def build() -> Runtime:
        return await Runtime.build(cfg)

    app = GatehouseApp(build, cfg.server.cors_origins, Path(args.config).resolve() if args.config else None, sha)
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
        lifespan="on", access_log=False, proxy_headers=False, log_level="warning", server_header=False, date_header=False,
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
    return run_workers(cfg, workers, host, port, data_dir_from_env(), lambda _index: serve([reuseport_socket(host, port)]))


def cmd_check(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    print(f"config OK: {len(cfg.providers)} providers, {len(cfg.models)} models, "
          f"{len(cfg.groups)} groups, {len(cfg.consumers)} consumers")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    if args.keys_cmd == "hash":
        from gatehouse.runtime import key_fingerprint

        print(key_fingerprint(args.key))
        return 0
    cfg = load_config(args.config)
    return asyncio.run(_keys(cfg, args))


async def _keys(cfg: Config, args: argparse.Namespace) -> int:
    from gatehouse.errors import GatehouseError
    from gatehouse.policy.audit import AuditTrail
    from gatehouse.policy.directory_admin import DirectoryAdmin
    from gatehouse.policy.keys import new_key
    from gatehouse.store.directory_sql import DirectoryStore

    store, hasher = await _open_store(cfg)
    trail = AuditTrail.for_cli(store)
    directory = DirectoryAdmin(cfg, DirectoryStore(store), [m.name for m in cfg.models], trail)
    try:
        if args.keys_cmd == "create":
            try:
                await directory.require_consumer(args.consumer)
            except GatehouseError as e:
                print(f"error: {e.message.replace('POST /admin/consumers', 'gatehouse consumers create')}",
                      file=sys.stderr)
                return 1
            key = new_key()
            expires = time.time() + args.expires_in if args.expires_in else None
            record = hasher.record(args.consumer, key, args.description, expires)
            await store.add_key(record)
            await trail.record("key.create", record.id, {"consumer": record.consumer,
                                                         "description": record.description, "expires_at": expires})
            print(f"created key {record.id} for consumer '{args.consumer}' (shown only once):")
            print(key)
        elif args.keys_cmd == "list":
            now = time.time()
            for r in await store.list_keys(args.consumer):
                state = "active" if r.usable(now) else "revoked" if r.revoked_at else "expired"
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at))
                print(f"{r.id}  {r.consumer:<20} {r.prefix:<12} {state:<8} {when}  {r.description or ''}")
        elif args.keys_cmd == "rotate":
            from gatehouse.cli_admin import rotate_key

            return await rotate_key(store, hasher, args, directory)
        elif args.keys_cmd == "revoke":
            revoked = await store.revoke_key(args.key_id, time.time())
            if revoked is None:
                print(f"no key with id '{args.key_id}'", file=sys.stderr)
                return 1
            await trail.record("key.revoke", revoked.id, {"consumer": revoked.consumer})
            print(f"revoked {revoked.id} ({revoked.consumer})")
        return 0
    finally:
        await store.close()


def cmd_client_env(args: argparse.Namespace) -> int:
    from gatehouse import client_env

    if args.client == "codex":
        return _client_env_codex(args)
    if args.client == "status":
        sys.stdout.write(client_env.status(os.environ))
        return 0
    if args.remote:
        sys.stdout.write(client_env.render_remote(args.client, args.shell))
        return 0
    url, model, note = args.url, args.model, None
    hint = None  # a comment line after the header
    if args.port_forward:
        namespace, _, service = args.port_forward.rpartition("/")
        pf = client_env.port_forward_hint(namespace or "gatehouse", service or "gatehouse", args.local_port)
        hint, url = f"Run in another terminal: {pf}", url or f"http://127.0.0.1:{args.local_port}"
    if not url or (not model and args.client == "claude-code"):
        cfg = load_config(args.config)
        if not url:
            url = _base_url(cfg, cfg.server.host, cfg.server.port)
            if not cfg.server.public_url:  # the local default; a cluster without an ingress needs a port-forward
                pf = client_env.port_forward_hint("gatehouse", "gatehouse", args.local_port)
                hint = f"No server.public_url. On Kubernetes without an ingress add --port-forward ({pf})."
        if not model and args.client == "claude-code":
            model, note = client_env.default_claude_model(cfg)
    out = client_env.render(args.client, args.shell, url, args.key, model, args.small_model, note)
    if hint:
        head, _, rest = out.partition("\n")
        out = f"{head}\n# {hint}\n{rest}"
    sys.stdout.write(out)
    return 0


def _client_env_codex(args: argparse.Namespace) -> int:
    from gatehouse.client_env_codex import ClientEnvError, generate

    cfg = load_config(args.config) if args.config or not args.url or not args.key else None
    url: str = args.url
    if not url:
        assert cfg is not None
        url = _base_url(cfg, cfg.server.host, cfg.server.port)
    try:
        sys.stdout.write(generate(url, args.key, cfg, args.model, args.catalog, args.codex_bin))
    except ClientEnvError as e:
        print(f"gatehouse client-env codex: {e}", file=sys.stderr)
        return 1
    return 0


def _add_client_env(sub: Subparsers) -> None:
    from gatehouse.client_env import CLIENTS, SHELLS

    e = sub.add_parser("client-env", help="print the environment that points a client at the gateway",
                       description="Print shell statements, e.g. eval \"$(gatehouse client-env claude-code)\"; "
                                   "`status` shows what the current shell points at.")
    e.add_argument("client", choices=(*CLIENTS, "status"))
    e.add_argument("--remote", action="store_true",
                   help="undo: unset the gateway variables so the client talks to its vendor directly")
    e.add_argument("--port-forward", nargs="?", const="gatehouse/gatehouse", metavar="NAMESPACE/SERVICE",
                   help="cluster without an ingress: use http://127.0.0.1:LOCAL_PORT and print the kubectl "
                        "port-forward to run (default gatehouse/gatehouse)")
    e.add_argument("--local-port", type=int, default=8080, help="local port of --port-forward (default 8080)")
    e.add_argument("--config", "-c", help="YAML config file (for server.public_url or host/port)")
    e.add_argument("--url", help="the gateway URL clients use (default: server.public_url, else host:port)")
    e.add_argument("--key", help="the gateway key to export (default: a placeholder to replace)")
    e.add_argument("--model", help="claude-code: the model for ANTHROPIC_MODEL; codex: the default model")
    e.add_argument("--small-model", help="claude-code: the quick side-task model (default: --model)")
    e.add_argument("--shell", choices=SHELLS, default="bash", help="bash (also zsh), fish or powershell")
    e.add_argument("--catalog", metavar="PATH", help="codex: write a model_catalog_json of the key's models here "
                   "(with --key: the models the gateway lets that key use)")
    e.add_argument("--codex-bin", help="codex: the Codex binary whose catalog entries are cloned (default: codex on PATH)")
    e.set_defaults(func=cmd_client_env)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gatehouse", description="A private LLM gateway.")
    sub = p.add_subparsers(dest="cmd", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--config", "-c", help="YAML config file (default: the embedded default)")
        return sp

    s = with_config(sub.add_parser("serve", help="run the gateway"))
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", help="worker processes sharing the port: a number or 'auto' (usable CPUs, "
                   "container-aware); default $GATEHOUSE_WORKERS, else 1 (docs/operations.md#workers)")
    s.set_defaults(func=cmd_serve)

    c = with_config(sub.add_parser("check", help="validate a config file without serving"))
    c.set_defaults(func=cmd_check)

    k = sub.add_parser("keys", help="create, list and revoke consumer API keys")
    ks = k.add_subparsers(dest="keys_cmd", required=True)
    kc = with_config(ks.add_parser("create", help="create a key (printed once)"))
    kc.add_argument("consumer")
    kc.add_argument("--description")
    kc.add_argument("--expires-in", type=float, help="seconds until the key expires")
    kl = with_config(ks.add_parser("list", help="list keys (never the keys themselves)"))
    kl.add_argument("--consumer")
    kr = with_config(ks.add_parser("revoke", help="revoke a key by id"))
    kr.add_argument("key_id")
    kh = ks.add_parser("hash", help="print sha256:<hex> of a key, for config files")
    kh.add_argument("key")
    k.set_defaults(func=cmd_keys)
    _add_client_env(sub)
    add_metering_commands(sub, with_config)

    from gatehouse.cli_admin import add_admin_commands, add_audit_command, add_rotate_command

    add_rotate_command(ks, with_config)
    add_admin_commands(sub, with_config)
    add_audit_command(sub, with_config)
    from gatehouse.importers.cli import add_import_command

    add_import_command(sub)
    from gatehouse.observability.top import add_top_command

    add_top_command(sub)
    return p


# ---- migrate and usage -----------------------------------------------------------------------


def add_metering_commands(sub: Subparsers, with_config: WithConfig) -> None:
    from gatehouse.evals.cli import add_eval_command

    add_eval_command(sub)
    m = with_config(sub.add_parser("migrate", help="apply database schema migrations"))
    m.set_defaults(func=cmd_migrate)
    u = with_config(sub.add_parser("usage", help="usage and cost from the ledger"))
    u.add_argument("--by", default="model", choices=["consumer", "group", "model", "deployment", "provider",
                                                     "key", "day"])
    u.add_argument("--since", default="7d", help="7d, 24h, 30m or an ISO date (default 7d)")
    u.add_argument("--until", help="same forms as --since (default: now)")
    u.add_argument("--consumer")
    u.add_argument("--group")
    u.add_argument("--model")
    u.add_argument("--csv", action="store_true", help="CSV instead of a table")
    u.set_defaults(func=cmd_usage)


def cmd_migrate(args: argparse.Namespace) -> int:
    from gatehouse.runtime import store_url
    from gatehouse.store.migrate import current_revision, upgrade
    from gatehouse.store.sql import SqlStore, redact_url

    cfg = load_config(args.config)
    url = store_url(cfg, data_dir_from_env())

    async def run() -> tuple[str | None, str]:
        store = SqlStore(url)
        try:
            return await current_revision(store), await upgrade(store)
        finally:
            await store.close()

    before, after = asyncio.run(run())
    if before == after:
        print(f"{redact_url(url)}: schema is up to date (revision {after})")
    else:
        print(f"{redact_url(url)}: schema migrated from {before or 'empty'} to revision {after}")
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    from gatehouse.metering.report import UsageQueryError, parse_query, render_csv, render_table
    from gatehouse.store.ledger import usage_report

    cfg = load_config(args.config)
    params = {k: v for k, v in {"by": args.by, "since": args.since, "until": args.until,
                                "consumer": args.consumer, "group": args.group, "model": args.model}.items() if v}
    try:
        query = parse_query(params)
    except UsageQueryError as e:
        print(f"usage: {e}", file=sys.stderr)
        return 2

    async def run() -> list[UsageRow]:
        store, _ = await _open_store(cfg)
        try:
            return await usage_report(store, query.by, query.since, query.until, consumer=query.consumer,
                                      group=query.group, model=query.model)
        finally:
            await store.close()

    rows = asyncio.run(run())
    print(render_csv(query.by, rows) if args.csv else render_table(query.by, rows), end="" if args.csv else "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
