"""``hashfed retract``: permanently withdraw one of the member's own submissions.

A retraction is itself an entry appended to the member's log (the original stays in the log,
which is append-only); every node that mirrors the log stops matching the target once it has
the retraction.  The target entry is named by ``--origin M --index N --leaf-hash H`` (what
``hashfed match --json`` and ``hashfed verify-receipt`` print), by ``--target M:N:H``, or by
``--receipt FILE``, a receipt ``hashfed submit`` saved.

The entry id defaults to ``retract-ORIGIN-INDEX``, so re-running the command is an idempotent
retry.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from federation.cli.nodeclient import NodeClient, add_node_arguments, resolve_target
from federation.cli.output import print_fields, print_json
from federation.errors import InputError

REASONS = ("false-positive", "victim-withdrawal", "legal", "duplicate", "error")


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """Options naming the target entry (shared with ``opinion``)."""
    group = parser.add_argument_group("target", "the entry this one is about")
    group.add_argument("--origin", metavar="MEMBER", help="member id whose log holds it")
    group.add_argument("--index", type=int, metavar="N", help="its index in that log")
    group.add_argument("--leaf-hash", metavar="HEX", help="its leaf hash (64 hex)")
    group.add_argument("--target", metavar="M:N:H", help="the three above in one")
    group.add_argument("--receipt", type=Path, metavar="FILE", help="take them from a receipt")


def target_from_receipt(path: Path) -> dict[str, Any]:
    """The entry a receipt proves, as an EntryRef (read, not verified: the node checks it)."""
    from federation.core.entries import leaf_hash, parse_leaf
    from federation.core.receipt import TlogProof

    proof = TlogProof.parse(path.read_text(encoding="utf-8"))
    if proof.extra is None:
        raise InputError(f"{path} carries no entry (no extra line)", field="receipt")
    entry = parse_leaf(proof.extra).entry
    return {"origin": entry.origin, "index": proof.index, "leaf_hash": leaf_hash(proof.extra).hex()}


def target_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The target EntryRef from exactly one of the three ways of naming it."""
    from federation.core.ids import check_hash_hex, check_member_id

    parts = [args.origin, args.index, args.leaf_hash]
    ways = sum(
        (any(p is not None for p in parts), args.target is not None, args.receipt is not None)
    )
    if ways != 1:
        raise InputError(
            "name the target once: --origin/--index/--leaf-hash, --target M:N:H or --receipt FILE",
            field="target",
        )
    if args.receipt is not None:
        return target_from_receipt(args.receipt)
    if args.target is not None:
        pieces = args.target.split(":")
        if len(pieces) != 3 or not pieces[1].isdigit():
            raise InputError("--target must be ORIGIN:INDEX:LEAFHASH", field="target")
        parts = [pieces[0], int(pieces[1]), pieces[2]]
    origin, index, leaf = parts
    if origin is None or index is None or leaf is None:
        raise InputError("give all of --origin, --index and --leaf-hash", field="target")
    try:
        check_member_id(origin)
        leaf = check_hash_hex(leaf)
    except ValueError as exc:
        raise InputError(f"target: {exc}", field="target") from None
    if index < 0:
        raise InputError("--index must be >= 0", field="index")
    return {"origin": origin, "index": index, "leaf_hash": leaf}


def add_receipt_arguments(parser: argparse.ArgumentParser) -> None:
    """``--receipts-dir``, ``--no-receipts`` and ``--json``: shared by every command that
    appends (submit, retract, opinion) and so gets receipts back."""
    parser.add_argument("--receipts-dir", type=Path, default=Path("receipts"), metavar="DIR")
    parser.add_argument("--no-receipts", action="store_true", help="do not save receipt files")
    parser.add_argument("--json", action="store_true", help="print JSON")


def receipts_dir(args: argparse.Namespace) -> Path | None:
    """Where to save receipts, or None with ``--no-receipts``."""
    return None if args.no_receipts else Path(args.receipts_dir)


def print_receipt(receipt: dict[str, Any], *, as_json: bool, receipts_dir: Path | None) -> None:
    """One written entry: its place in the log, and where its receipt was saved."""
    from federation.cli.submit_cmd import save_receipt

    entry = receipt["entry"]["entry"]
    saved = save_receipt(receipts_dir, receipt) if receipts_dir is not None else None
    record = {
        "id": entry["id"], "kind": entry["kind"], "origin": entry["origin"],
        "index": receipt["index"], "leaf_hash": receipt["leaf_hash"],
        "existing": receipt["existing"], "target": entry["target"],
        "receipt_file": str(saved) if saved else None,
    }  # fmt: skip
    if as_json:
        print_json(record)
        return
    t = entry["target"]
    print_fields(
        [
            (entry["kind"], f"{entry['origin']} #{receipt['index']}"
             + (" (existing)" if receipt["existing"] else "")),
            ("target", f"{t['origin']} #{t['index']} leaf {t['leaf_hash']}"),
            ("receipt", saved or "-"),
        ]
    )  # fmt: skip


async def post_one(args: argparse.Namespace, path: str, key: str, item: dict[str, Any]) -> Any:
    """POST one entry of kind ``key`` (``retractions``/``opinions``); its receipt."""
    async with NodeClient(resolve_target(args), timeout=args.timeout) as node:
        return (await node.post(path, {key: [item]}))["receipts"][0]


def run(args: argparse.Namespace) -> int:
    """Build the retraction, append it, print where it landed."""
    target = target_from_args(args)
    item: dict[str, Any] = {
        "id": args.id or f"retract-{target['origin']}-{target['index']}",
        "target": target,
        "reason": args.reason,
    }
    if args.note:
        item["note"] = args.note
    receipt = asyncio.run(post_one(args, "/v1/retractions", "retractions", item))
    print_receipt(receipt, as_json=args.json, receipts_dir=receipts_dir(args))
    return 0


def register(subparsers: Any) -> None:
    """Add ``retract``."""
    parser = subparsers.add_parser(
        "retract",
        help="withdraw one of your own submissions (permanent)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_target_arguments(parser)
    parser.add_argument("--reason", required=True, choices=REASONS)
    parser.add_argument("--note", metavar="TEXT", help="short note (no names or links)")
    parser.add_argument("--id", metavar="ID", help="entry id (default retract-ORIGIN-INDEX)")
    add_receipt_arguments(parser)
    add_node_arguments(parser)
    parser.set_defaults(func=run)
