"""`gatehouse import litellm|kong FILE`: a peer gateway's config converted into a Gatehouse config
(the converters are gatehouse/importers/)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from gatehouse.cli.common import Subparsers


def add_import_command(sub: Subparsers) -> None:
    p = sub.add_parser("import", help="convert a LiteLLM or Kong declarative config into a Gatehouse config",
                       description="Print (or write) a Gatehouse config made from a peer gateway's config. "
                                   "Secrets are not copied: upstream keys become ${VAR} references, "
                                   "consumer keys sha256 hashes. See docs/migration.md.")
    p.add_argument("source", choices=["litellm", "kong"])
    p.add_argument("file", help="LiteLLM proxy config.yaml, or Kong declarative kong.yaml")
    p.add_argument("--output", "-o", help="write here instead of stdout")
    p.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    from gatehouse.config import ConfigError, from_mapping
    from gatehouse.importers import kong, litellm
    from gatehouse.importers.common import NotImportable, header

    try:
        with open(args.file) as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        print(f"import: cannot read {args.file}: {e.strerror}", file=sys.stderr)
        return 1
    except yaml.YAMLError as e:
        print(f"import: {args.file} is not valid YAML: {getattr(e, 'problem', e)}", file=sys.stderr)
        return 1
    try:
        draft = (litellm if args.source == "litellm" else kong).convert(doc)
    except NotImportable as e:
        print(f"import: {args.file}: {e}", file=sys.stderr)
        return 1
    result = draft.render()
    try:  # what is written must pass `gatehouse check` once its variables are set
        from_mapping(result, {**os.environ, **{name: "set-me" for name in draft.env}})
    except ConfigError as e:
        print(f"import: the converted config does not check ({e}); please report this", file=sys.stderr)
        return 1
    text = header(draft.notes, draft.env, f"{args.source} config {os.path.basename(args.file)}") + \
        yaml.safe_dump(result, sort_keys=False, allow_unicode=True)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
        print(f"wrote {args.output}: {len(draft.providers)} providers, {len(draft.models)} models, "
              f"{len(draft.groups)} groups, {len(draft.consumers)} consumers", file=sys.stderr)
    else:
        sys.stdout.write(text)
    for note in draft.notes:
        print(f"note: {note}", file=sys.stderr)
    if draft.env:
        print("set before serving: " + ", ".join(sorted(draft.env)), file=sys.stderr)
    return 0
