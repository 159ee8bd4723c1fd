"""`gatehouse client-env CLIENT`: the shell statements that point a client (Claude Code, Codex,
the OpenAI SDKs, ...) at the gateway, or back at its vendor (--remote); gatehouse/client_env.py
and client_env_codex.py render them."""
from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from gatehouse.cli.common import base_url, load_config

if TYPE_CHECKING:
    from gatehouse.cli.common import Subparsers


def add_client_env_command(sub: Subparsers) -> None:
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
    e.add_argument("--codex-bin",
                   help="codex: the Codex binary whose catalog entries are cloned (default: codex on PATH)")
    e.set_defaults(func=cmd_client_env)


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
            url = base_url(cfg, cfg.server.host, cfg.server.port)
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
        url = base_url(cfg, cfg.server.host, cfg.server.port)
    try:
        sys.stdout.write(generate(url, args.key, cfg, args.model, args.catalog, args.codex_bin))
    except ClientEnvError as e:
        print(f"gatehouse client-env codex: {e}", file=sys.stderr)
        return 1
    return 0
