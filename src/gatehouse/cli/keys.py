"""`gatehouse keys create | list | revoke | rotate | hash`: consumer API keys, in the store.

Like every store command, these work on the store directly (no running server needed);
running replicas see a change within their key cache's half second. Every change is recorded
in the audit log, by `cli:<user>`. A key is printed once, when it is made; never again.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TYPE_CHECKING

from gatehouse.cli.common import WithConfig, load_config, open_store
from gatehouse.config import Config
from gatehouse.errors import GatehouseError

if TYPE_CHECKING:
    from gatehouse.cli.common import Subparsers
    from gatehouse.policy.directory_admin import DirectoryAdmin
    from gatehouse.policy.keys import KeyHasher
    from gatehouse.store.sql import SqlStore


def add_keys_command(sub: Subparsers, with_config: WithConfig) -> Subparsers:
    """Returns the `keys` subcommands' parser, for `rotate` (added later, to keep the help's order)."""
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
    return ks


def add_rotate_command(keys_sub: Subparsers, with_config: WithConfig) -> None:
    r = with_config(keys_sub.add_parser("rotate", help="a new key for the same consumer; the old one "
                                                       "keeps working for --grace seconds"))
    r.add_argument("key_id")
    r.add_argument("--grace", type=float, default=3600.0, help="seconds the old key stays valid (default 3600)")
    r.add_argument("--description")


def cmd_keys(args: argparse.Namespace) -> int:
    if args.keys_cmd == "hash":
        from gatehouse.runtime import key_fingerprint

        print(key_fingerprint(args.key))
        return 0
    cfg = load_config(args.config)
    return asyncio.run(_keys(cfg, args))


async def _keys(cfg: Config, args: argparse.Namespace) -> int:
    from gatehouse.policy.audit import AuditTrail
    from gatehouse.policy.directory_admin import DirectoryAdmin
    from gatehouse.policy.keys import new_key
    from gatehouse.store.directory_sql import DirectoryStore

    store, hasher = await open_store(cfg)
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
            return await _rotate_key(store, hasher, args, directory)
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


async def _rotate_key(store: SqlStore, hasher: KeyHasher, args: argparse.Namespace, admin: DirectoryAdmin) -> int:
    from gatehouse.policy.key_rotation import rotate

    try:
        new, key, old = await rotate(store, hasher, args.key_id, args.grace, args.description,
                                     admin.require_consumer)
    except GatehouseError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1
    await admin.record("key.rotate", old.id, {"consumer": old.consumer, "new_key_id": new.id,
                                              "old_key_expires_at": old.expires_at})
    until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(old.expires_at)) if old.expires_at else "-"
    print(f"created key {new.id} for consumer '{new.consumer}' (shown only once); {old.id} stays valid until {until}:")
    print(key)
    return 0
