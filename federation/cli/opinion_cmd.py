"""``hashfed opinion``: record the member's verdict on any member's entry.

Opinions are how members disagree without deleting anything: a platform that finds a shared
hash flags innocent content says ``false_positive``; a hotline that confirms it says
``true_positive``; ``disputed_label`` says the content is abusive but the labels are wrong.
The opinion is an entry in the member's own log, so every node sees it; ``hashfed match``
then shows the entry as ``disputed``, and a federation policy may quarantine it.

The target is named as for ``hashfed retract`` (``--origin/--index/--leaf-hash``, ``--target
M:N:H`` or ``--receipt FILE``).  The entry id defaults to ``opinion-ORIGIN-INDEX-VERDICT``, so
re-running the command is an idempotent retry; changing one's mind is a new verdict.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from federation.cli.nodeclient import add_node_arguments
from federation.cli.retract_cmd import (
    add_receipt_arguments,
    add_target_arguments,
    post_one,
    print_receipt,
    receipts_dir,
    target_from_args,
)

VERDICTS = ("true_positive", "false_positive", "disputed_label")


def run(args: argparse.Namespace) -> int:
    """Build the opinion, append it, print where it landed."""
    target = target_from_args(args)
    item: dict[str, Any] = {
        "id": args.id or f"opinion-{target['origin']}-{target['index']}-{args.verdict}",
        "target": target,
        "verdict": args.verdict,
    }
    if args.comment:
        item["comment"] = args.comment
    receipt = asyncio.run(post_one(args, "/v1/opinions", "opinions", item))
    print_receipt(receipt, as_json=args.json, receipts_dir=receipts_dir(args))
    return 0


def register(subparsers: Any) -> None:
    """Add ``opinion``."""
    parser = subparsers.add_parser(
        "opinion",
        help="record your verdict on an entry (true/false positive, disputed label)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_target_arguments(parser)
    parser.add_argument("--verdict", required=True, choices=VERDICTS)
    parser.add_argument("--comment", metavar="TEXT", help="short comment (no names or links)")
    parser.add_argument("--id", metavar="ID", help="entry id (default opinion-ORIGIN-INDEX-V)")
    add_receipt_arguments(parser)
    add_node_arguments(parser)
    parser.set_defaults(func=run)
