"""`gatehouse groups ...` and `gatehouse consumers ...`: list, show, create, update, delete.

Like `gatehouse keys`, these work on the store directly (no running server needed); running
replicas pick a change up within half a second. Config-file entries are shown but can only
be changed in the file. Every change is recorded in the audit log, by `cli:<user>`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gatehouse.cli.common import WithConfig, load_config, open_store
from gatehouse.errors import GatehouseError

if TYPE_CHECKING:
    from gatehouse.cli.common import Subparsers
    from gatehouse.config import Config

LIMIT_FLAGS = {
    "tokens_per_minute": int, "requests_per_minute": int, "max_concurrent": int, "max_tokens": int,
    "budget_usd_per_day": float, "budget_usd_per_month": float,
}


def _limit_value(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if text in ("unlimited", "none", "inherit"):
            return "unlimited" if text == "unlimited" else None
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, 'unlimited' or 'none', got '{text}'") from None
    return parse


def _add_fields(p: argparse.ArgumentParser, consumer: bool) -> None:
    for name, kind in LIMIT_FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=_limit_value(kind), default=argparse.SUPPRESS,
                       metavar="N|unlimited|none")
    p.add_argument("--models", default=argparse.SUPPRESS, help="comma-separated names or glob patterns")
    p.add_argument("--description", default=argparse.SUPPRESS)
    if consumer:
        p.add_argument("--group", default=argparse.SUPPRESS)
    else:
        p.add_argument("--limit-scope", dest="limit_scope", choices=["consumer", "group"], default=argparse.SUPPRESS)


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in (*LIMIT_FLAGS, "description", "group", "limit_scope"):
        if hasattr(args, name):
            out[name] = getattr(args, name)
    if hasattr(args, "models"):
        out["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    return out


def add_directory_commands(sub: Subparsers, with_config: WithConfig) -> None:
    for what in ("groups", "consumers"):
        consumer = what == "consumers"
        p = sub.add_parser(what, help=f"create, list, show, update and delete {what}")
        ps = p.add_subparsers(dest="admin_cmd", required=True)
        lst = with_config(ps.add_parser("list", help=f"list {what} (config and store)"))
        if consumer:
            lst.add_argument("--group")
        with_config(ps.add_parser("show", help="show one, with its effective limits")).add_argument("name")
        create = with_config(ps.add_parser("create", help="create one in the store"))
        create.add_argument("name")
        _add_fields(create, consumer)
        update = with_config(ps.add_parser("update", help="change the given fields ('none' clears one)"))
        update.add_argument("name")
        _add_fields(update, consumer)
        delete = with_config(ps.add_parser("delete", help="delete one" + (" and revoke its keys" if consumer else "")))
        delete.add_argument("name")
        p.set_defaults(func=cmd_directory, what=what)


def cmd_directory(args: argparse.Namespace) -> int:
    return asyncio.run(_directory(load_config(args.config), args))


async def _directory(cfg: Config, args: argparse.Namespace) -> int:
    from gatehouse.policy.audit import AuditTrail
    from gatehouse.policy.directory_admin import DirectoryAdmin
    from gatehouse.store.directory_sql import DirectoryStore

    store, _ = await open_store(cfg)
    admin = DirectoryAdmin(cfg, DirectoryStore(store), [m.name for m in cfg.models], AuditTrail.for_cli(store))
    groups = args.what == "groups"
    try:
        cmd = args.admin_cmd
        if cmd == "list":
            rows = await (admin.list_groups() if groups else admin.list_consumers(args.group))
            for r in rows:
                print(_row(r, groups))
        elif cmd == "show":
            _print_json(await (admin.get_group(args.name) if groups else admin.get_consumer(args.name)))
        elif cmd == "create":
            body = {"name": args.name, **_fields(args)}
            _print_json(await (admin.create_group(body) if groups else admin.create_consumer(body)))
        elif cmd == "update":
            changes = _fields(args)
            _print_json(await (admin.update_group(args.name, changes) if groups
                               else admin.update_consumer(args.name, changes)))
        elif cmd == "delete":
            await (admin.delete_group(args.name) if groups else admin.delete_consumer(args.name))
            print(f"deleted {args.what[:-1]} '{args.name}'" + ("" if groups else " and revoked its keys"))
        return 0
    except GatehouseError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1
    finally:
        await store.close()


def _row(r: dict[str, Any], groups: bool) -> str:
    limits = r if groups else r["limits"]
    shown = ", ".join(f"{k}={limits[k]}" for k in LIMIT_FLAGS if limits.get(k) is not None) or "unlimited"
    models = r["allowed_models"] if r["allowed_models"] == "*" else ",".join(r["allowed_models"])
    middle = "" if groups else f"{r['group'] or '-':<16} "
    return f"{r['name']:<20} {middle}{r['source']:<7} models={models or '(none)'}  {shown}"


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))
