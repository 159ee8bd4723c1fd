"""The `gatehouse` command: serve | check | keys | client-env | eval | migrate | usage | groups |
consumers | audit | import | top.

One module per command (family), each with an `add_*_command(sub, ...)` that declares its
flags and a `cmd_*(args) -> int` that runs it; common.py holds what they share (load_config,
open_store). Modules import only argparse-level things at import time: `gatehouse serve`
builds the whole parser and must not pay for the other commands' libraries.

`main(argv)` returns the exit code and never exits the process - argparse's own exits
(--help, a bad flag) become return values too - so tests call it in-process; the console
script and `python -m gatehouse` exit with what it returns.
"""
from __future__ import annotations

import argparse
import sys

from gatehouse.cli.audit import add_audit_command
from gatehouse.cli.check import add_check_command
from gatehouse.cli.client_env import add_client_env_command
from gatehouse.cli.common import with_config
from gatehouse.cli.directory import add_directory_commands
from gatehouse.cli.eval import add_eval_command
from gatehouse.cli.import_config import add_import_command
from gatehouse.cli.keys import add_keys_command, add_rotate_command
from gatehouse.cli.migrate import add_migrate_command
from gatehouse.cli.serve import add_serve_command
from gatehouse.cli.usage import add_usage_command
from gatehouse.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    from gatehouse.observability.top import add_top_command

    p = argparse.ArgumentParser(prog="gatehouse", description="A private LLM gateway.")
    sub = p.add_subparsers(dest="cmd", required=True)
    add_serve_command(sub, with_config)
    add_check_command(sub, with_config)
    keys = add_keys_command(sub, with_config)
    add_client_env_command(sub)
    add_eval_command(sub)
    add_migrate_command(sub, with_config)
    add_usage_command(sub, with_config)
    add_rotate_command(keys, with_config)
    add_directory_commands(sub, with_config)
    add_audit_command(sub, with_config)
    add_import_command(sub)
    add_top_command(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse printed the help or the error; its exit status is ours
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    try:
        code: int = args.func(args)
        return code
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
