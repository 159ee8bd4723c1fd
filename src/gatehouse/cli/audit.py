"""`gatehouse audit`: admin actions (who changed keys, groups, consumers), newest first."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import TYPE_CHECKING

from gatehouse.cli.common import WithConfig, load_config, open_store

if TYPE_CHECKING:
    from gatehouse.cli.common import Subparsers
    from gatehouse.config import Config


def add_audit_command(sub: Subparsers, with_config: WithConfig) -> None:
    a = with_config(sub.add_parser("audit", help="admin actions (who changed keys, groups, consumers), newest first"))
    a.add_argument("--since", default="7d", help="7d, 24h, 30m or an ISO date (default 7d)")
    a.add_argument("--until", help="same forms as --since (default: now)")
    a.add_argument("--actor", help="admin-key, or cli:<user>")
    a.add_argument("--action", help="key.create, consumer.delete, ... or a family: key.*")
    a.add_argument("--target", help="a key id, group or consumer name")
    a.add_argument("--limit", type=int, default=100, help="at most this many (1-1000, default 100)")
    a.add_argument("--json", action="store_true", help="one JSON object per line")
    a.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    from gatehouse.metering.report import UsageQueryError, parse_time

    now = time.time()
    try:
        since = parse_time(args.since, "since", now)
        until = parse_time(args.until, "until", now) if args.until else None
    except UsageQueryError as e:
        print(f"audit: {e}", file=sys.stderr)
        return 2
    if not 1 <= args.limit <= 1000:
        print("audit: --limit must be from 1 to 1000", file=sys.stderr)
        return 2
    return asyncio.run(_audit(load_config(args.config), args, since, until))


async def _audit(cfg: Config, args: argparse.Namespace, since: float, until: float | None) -> int:
    from gatehouse.store.audit_sql import AuditStore

    store, _ = await open_store(cfg)
    try:
        entries = await AuditStore(store).query(since=since, until=until, actor=args.actor, action=args.action,
                                                target=args.target, limit=args.limit)
    finally:
        await store.close()
    for e in entries:
        if args.json:
            print(json.dumps(e.view(), ensure_ascii=False))
        else:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.ts))
            detail = json.dumps(e.detail, ensure_ascii=True, sort_keys=True)
            print(f"{when}  {e.actor:<16} {e.action:<16} {e.target!r:<24} {detail}")
    return 0
