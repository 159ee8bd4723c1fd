"""`gatehouse check`: validate a config file without serving."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from gatehouse.cli.common import WithConfig, load_config

if TYPE_CHECKING:
    from gatehouse.cli.common import Subparsers


def add_check_command(sub: Subparsers, with_config: WithConfig) -> None:
    c = with_config(sub.add_parser("check", help="validate a config file without serving"))
    c.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    print(f"config OK: {len(cfg.providers)} providers, {len(cfg.models)} models, "
          f"{len(cfg.groups)} groups, {len(cfg.consumers)} consumers")
    return 0
