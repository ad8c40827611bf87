"""``hashfed admin``: operator actions on the member's own node (client role ``admin``).

``hashfed admin unfreeze ORIGIN`` lifts the split-view freeze of a mirrored log (the member id
of its origin) once the operator has dealt with the cause; the evidence stays on record and the
node pulls the log at once (``POST /v1/admin/unfreeze``, spec/sync.md §12).

``hashfed admin push-manifest FILE`` offers a newer signed manifest to the node
(``POST /v1/manifest``).  The node accepts it only if a quorum of the stewards of the version
in force signed it, then pushes it to every peer (spec/sync.md §10).  The file is checked
locally first so a typo is reported here, not as a 400.

Exit codes: 0 done, 2 refused input (not frozen, quorum not met, bad file), 3 node unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from federation.cli.nodeclient import NodeClient, add_node_arguments, resolve_target
from federation.cli.output import print_fields, print_json


def _call(args: argparse.Namespace, path: str, body: dict[str, Any]) -> dict[str, Any]:
    target = resolve_target(args)

    async def go() -> dict[str, Any]:
        async with NodeClient(target, timeout=args.timeout) as node:
            answer: dict[str, Any] = await node.post(path, body)
            return answer

    return asyncio.run(go())


def run_unfreeze(args: argparse.Namespace) -> int:
    """``admin unfreeze ORIGIN``."""
    answer = _call(args, "/v1/admin/unfreeze", {"origin": args.origin})
    if args.json:
        print_json(answer)
    else:
        print_fields([("unfrozen", answer.get("origin")), ("was frozen for", answer.get("reason"))])
    return 0


def run_push_manifest(args: argparse.Namespace) -> int:
    """``admin push-manifest FILE``."""
    from federation.core.manifest import parse_signed_manifest, signed_manifest_json

    signed = parse_signed_manifest(Path(args.file).read_bytes())
    answer = _call(args, "/v1/manifest", signed_manifest_json(signed))
    if args.json:
        print_json(answer)
    else:
        print_fields(
            [("version in force", answer.get("version")), ("outcome", answer.get("outcome"))]
        )
    return 0


def register(subparsers: Any) -> None:
    """Add ``admin`` with its actions."""
    parser = subparsers.add_parser(
        "admin",
        help="operator actions on your node: unfreeze a log, push a new manifest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="admin_command", metavar="ACTION")
    sub.required = True
    unfreeze = sub.add_parser("unfreeze", help="lift the split-view freeze of a mirrored log")
    unfreeze.add_argument("origin", metavar="ORIGIN", help="member id of the log's origin")
    unfreeze.set_defaults(func=run_unfreeze)
    push = sub.add_parser("push-manifest", help="offer a newer signed manifest to the node")
    push.add_argument("file", type=Path, metavar="FILE", help="signed manifest JSON")
    push.set_defaults(func=run_push_manifest)
    for action in (unfreeze, push):
        action.add_argument("--json", action="store_true", help="print the node's answer as JSON")
        add_node_arguments(action)
