"""The `gatehouse` command: serve | check | keys ...

Every command takes --config FILE; without it, the embedded default under $GATEHOUSE_HOME
(or ./.gatehouse).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
import time
from pathlib import Path

from gatehouse import config as config_mod
from gatehouse.config import Config, ConfigError
from gatehouse.runtime import data_dir_from_env

EMBEDDED_CONSUMER = "local"


def load_config(path: str | None) -> Config:
    if path:
        return config_mod.load(path)
    from gatehouse.defaults import embedded_config

    return embedded_config(data_dir_from_env())


async def _open_store(cfg: Config):
    from gatehouse.policy.keys import KeyHasher, new_secret
    from gatehouse.runtime import store_url
    from gatehouse.store.sql import SqlStore, get_or_create_setting

    store = SqlStore(store_url(cfg, data_dir_from_env()))
    await store.create_schema()
    secret = cfg.server.secret or os.environ.get("GATEHOUSE_SECRET") or \
        await get_or_create_setting(store, "key_hmac_secret", new_secret)
    return store, KeyHasher(secret)


def _base_url(cfg: Config, host: str, port: int) -> str:
    if cfg.server.public_url:
        return cfg.server.public_url.rstrip("/")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{port}"


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

    from gatehouse.app import GatehouseApp, with_cors
    from gatehouse.runtime import Runtime

    cfg = load_config(args.config)
    host = args.host or cfg.server.host
    port = args.port or cfg.server.port
    logging.basicConfig(level=cfg.logging.level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not args.config:
        asyncio.run(_first_start_key(cfg, _base_url(cfg, host, port)))

    async def build() -> Runtime:
        return await Runtime.build(cfg)

    app = GatehouseApp(build)
    server_config = uvicorn.Config(
        with_cors(app, cfg.server.cors_origins), host=host, port=port, loop="uvloop", http="httptools",
        lifespan="on", access_log=False, log_level="warning", server_header=False, date_header=False,
        timeout_graceful_shutdown=int(cfg.server.shutdown_grace_seconds), timeout_keep_alive=30,
    )

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):  # noqa: ANN001 - uvicorn's signature
            rt = app.runtime
            if rt is not None and not rt.draining:
                rt.draining = True  # new requests get 503, /readyz goes red
                if cfg.server.drain_seconds > 0:
                    threading.Timer(cfg.server.drain_seconds, super().handle_exit, (sig, frame)).start()
                    return
            super().handle_exit(sig, frame)

    print(f"gatehouse listening on http://{host}:{port} ({len(cfg.models)} models)", file=sys.stderr, flush=True)
    Server(server_config).run()
    return 0


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
    from gatehouse.policy.keys import new_key

    store, hasher = await _open_store(cfg)
    try:
        if args.keys_cmd == "create":
            key = new_key()
            expires = time.time() + args.expires_in if args.expires_in else None
            record = hasher.record(args.consumer, key, args.description, expires)
            await store.add_key(record)
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

            return await rotate_key(store, hasher, args)
        elif args.keys_cmd == "revoke":
            record = await store.revoke_key(args.key_id, time.time())
            if record is None:
                print(f"no key with id '{args.key_id}'", file=sys.stderr)
                return 1
            print(f"revoked {record.id} ({record.consumer})")
        return 0
    finally:
        await store.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gatehouse", description="A private LLM gateway.")
    sub = p.add_subparsers(dest="cmd", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--config", "-c", help="YAML config file (default: the embedded default)")
        return sp

    s = with_config(sub.add_parser("serve", help="run the gateway"))
    s.add_argument("--host")
    s.add_argument("--port", type=int)
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

    from gatehouse.cli_admin import add_admin_commands, add_rotate_command

    add_rotate_command(ks, with_config)
    add_admin_commands(sub, with_config)
    return p


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
