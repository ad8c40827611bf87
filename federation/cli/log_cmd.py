"""``hashfed log export``: write an offline audit bundle (spec/audit.md §1).

``--node URL`` reads a node's public routes (no key needed); ``--config node.toml`` reads the
node's own database directly, including its checkpoint history.  ``hashfed audit --bundle``
then verifies the file with no network.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from federation.audit.export import export_from_config, export_from_node
from federation.cli.output import ProgressBar, notice
from federation.errors import InputError


def register(sub: Any) -> None:
    """Add ``hashfed log`` with its ``export`` subcommand."""
    p = sub.add_parser("log", help="log utilities (export an audit bundle)")
    actions = p.add_subparsers(dest="log_command", metavar="ACTION")
    actions.required = True
    e = actions.add_parser("export", help="write an offline audit bundle")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--node", help="node base URL to export from")
    src.add_argument("--config", type=Path, help="node.toml: export from its database")
    e.add_argument("--out", required=True, type=Path, help="bundle file (.gz to compress)")
    e.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Entry point of ``hashfed log export``."""
    if args.out.exists():
        raise InputError(f"{args.out} exists; refusing to overwrite it", field="out")
    with ProgressBar(None, "leaves exported") as bar:
        if args.node is not None:
            total = asyncio.run(
                export_from_node(args.node, args.out, clock=time.time, on_leaves=bar.advance)
            )
        else:
            total = asyncio.run(
                export_from_config(args.config, args.out, clock=time.time, on_leaves=bar.advance)
            )
    notice(f"wrote {total} leaves to {args.out}")
    return 0
