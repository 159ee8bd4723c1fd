"""`gatehouse usage`: usage and cost from the ledger, as a table or CSV."""
from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from gatehouse.cli.common import WithConfig, load_config, open_store

if TYPE_CHECKING:
    from gatehouse.cli.common import Subparsers
    from gatehouse.store.ledger import UsageRow


def add_usage_command(sub: Subparsers, with_config: WithConfig) -> None:
    u = with_config(sub.add_parser("usage", help="usage and cost from the ledger"))
    u.add_argument("--by", default="model", choices=["consumer", "group", "model", "deployment", "provider",
                                                     "key", "day", "route", "data_class", "routed_to"])
    u.add_argument("--since", default="7d", help="7d, 24h, 30m or an ISO date (default 7d)")
    u.add_argument("--until", help="same forms as --since (default: now)")
    u.add_argument("--consumer")
    u.add_argument("--group")
    u.add_argument("--model")
    u.add_argument("--csv", action="store_true", help="CSV instead of a table")
    u.set_defaults(func=cmd_usage)


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
        store, _ = await open_store(cfg)
        try:
            return await usage_report(store, query.by, query.since, query.until, consumer=query.consumer,
                                      group=query.group, model=query.model)
        finally:
            await store.close()

    rows = asyncio.run(run())
    print(render_csv(query.by, rows) if args.csv else render_table(query.by, rows), end="" if args.csv else "\n")
    return 0
