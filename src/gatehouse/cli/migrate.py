"""`gatehouse migrate`: bring the store's schema to the newest revision (store/migrate.py)."""
from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from gatehouse.cli.common import WithConfig, load_config
from gatehouse.runtime import data_dir_from_env

if TYPE_CHECKING:
    from gatehouse.cli.common import Subparsers


def add_migrate_command(sub: Subparsers, with_config: WithConfig) -> None:
    m = with_config(sub.add_parser("migrate", help="apply database schema migrations"))
    m.set_defaults(func=cmd_migrate)


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
