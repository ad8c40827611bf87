"""``hashfed verify-receipt``: check a submission receipt offline, with public keys only.

A receipt (c2sp.org/tlog-proof@v1, see :mod:`federation.core.receipt`) proves that the member
signed the entry and that the entry is in a tree head the member signed.  Anyone holding the
member's log verifier key can check it without contacting any node: a court, a platform that
received a takedown, an auditor.  The key comes from ``--log-key`` or from a manifest
(``--manifest``), looked up by the checkpoint's origin line.

The hash the entry shares is printed only with ``--show-hash``: a receipt is often checked in
a setting (a ticket, a log file) where the hash itself should not be copied around.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path
from typing import Any

from federation.cli.keys_cmd import value_or_file
from federation.cli.output import print_fields, print_json
from federation.core.checkpoint import Checkpoint
from federation.core.entries import Opinion, Retraction, Submission, leaf_hash
from federation.core.keys import PublicKey
from federation.core.manifest import parse_signed_manifest
from federation.core.note import SignedNote
from federation.core.receipt import TlogProof, VerifiedReceipt, verify_receipt
from federation.errors import VerificationError


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise VerificationError(
            "malformed receipt: not UTF-8 text", code="malformed_receipt"
        ) from None


def key_from_manifest(text: str, manifest_path: Path) -> tuple[PublicKey, str]:
    """The log key of the member whose log origin is the receipt checkpoint's origin.

    The origin is read from the checkpoint *before* its signature is checked, only to pick
    the key; :func:`verify_receipt` then checks that this key signed it for that origin.  The
    manifest is taken as the operator's trusted copy (verify it with ``manifest verify``).
    """
    proof = TlogProof.parse(text)
    origin = Checkpoint.parse_body(SignedNote.parse(proof.checkpoint).text).origin
    manifest = parse_signed_manifest(manifest_path.read_bytes()).manifest
    member = manifest.member_by_origin(origin)
    if member is None:
        raise VerificationError(
            f"no member of {manifest.federation} (version {manifest.version}) has log origin"
            f" {origin!r}",
            code="unknown_origin",
        )
    return member.log_key(), member.id


def describe(receipt: VerifiedReceipt, leaf: bytes, *, show_hash: bool) -> dict[str, Any]:
    """What the receipt proves, as the JSON that ``--json`` prints."""
    entry = receipt.entry.entry
    out: dict[str, Any] = {
        "valid": True,
        "origin": receipt.checkpoint.origin,
        "index": receipt.index,
        "tree_size": receipt.checkpoint.size,
        "root": base64.b64encode(receipt.checkpoint.root).decode(),
        "leaf_hash": leaf_hash(leaf).hex(),
        "kind": entry.kind,
        "member": entry.origin,
        "entry_id": entry.id,
        "created": entry.created,
    }
    if isinstance(entry, Submission):
        out["signal_kind"] = entry.signal.kind
        out["categories"] = [str(c) for c in entry.labels.categories]
        out["severity"] = str(entry.labels.severity)
        if show_hash:
            out["signal_value"] = entry.signal.value
    elif isinstance(entry, Retraction | Opinion):
        out["target"] = entry.target.model_dump(mode="json")
        out["reason" if isinstance(entry, Retraction) else "verdict"] = (
            entry.reason if isinstance(entry, Retraction) else entry.verdict
        )
    return out


def register(subparsers: Any) -> None:
    """Add ``verify-receipt``."""
    parser = subparsers.add_parser(
        "verify-receipt",
        help="verify a submission receipt offline (exit 0 valid, 1 invalid)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", help="receipt file, or - for stdin")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--log-key", metavar="VKEY", help="the member's log verifier key (or a .pub file)"
    )
    source.add_argument(
        "--manifest", type=Path, metavar="M", help="find the log key in this manifest"
    )
    parser.add_argument("--show-hash", action="store_true", help="also print the shared hash")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Verify; failures raise (one line with the error code, exit 1)."""
    text = _read(args.file)
    member_id = None
    if args.manifest is not None:
        key, member_id = key_from_manifest(text, args.manifest)
    else:
        key = PublicKey.parse(value_or_file(args.log_key))
    receipt = verify_receipt(text, key)
    if member_id is not None and receipt.entry.entry.origin != member_id:
        raise VerificationError(
            f"entry names origin {receipt.entry.entry.origin!r} but the log belongs to"
            f" {member_id!r}",
            code="origin_mismatch",
        )
    leaf = TlogProof.parse(text).extra
    if leaf is None:  # verify_receipt already refused this; keeps the type checker honest
        raise VerificationError("receipt carries no leaf bytes", code="malformed_receipt")
    info = describe(receipt, leaf, show_hash=args.show_hash)
    if args.json:
        print_json(info)
        return 0
    pairs: list[tuple[str, object]] = [("receipt", "valid")]
    for name, value in info.items():
        if name == "target":
            value = f"{value['origin']} #{value['index']} leaf {value['leaf_hash']}"
        elif isinstance(value, list):
            value = ",".join(value)
        if name != "valid":
            pairs.append((name.replace("_", " "), value))
    print_fields(pairs)
    return 0
