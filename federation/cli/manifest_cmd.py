"""``hashfed manifest``: how stewards write, sign and check the membership manifest.

File format.  Every manifest file, signed or not, is the JSON of a signed manifest::

    {"manifest": {...}, "signatures": [{"key_id": "hex8", "signature": "base64"}, ...]}

A *draft* is such a file whose ``signatures`` list is empty.  The rules:

* ``new`` writes a draft of version 1 (no members, default policy).
* An edit (``add-member``, ``suspend``, ``set-policy``, ``set-stewards``) of a draft changes it
  in place (or writes ``--out``) and keeps its version.
* An edit of a file that carries signatures starts the *next* version: version + 1, signatures
  cleared.  Because the signed version is still needed (nodes hold it, and
  ``verify --previous`` checks the next version against it), such an edit must name a new
  file with ``--out``.
* ``sign`` adds one steward signature and keeps the version; stewards sign one after another.
  A genesis version is signed by its own stewards; every later version by a quorum of the
  stewards of the version before it.
* ``verify`` checks the quorum: against the file's own stewards (genesis: compare the printed
  hash with the one pinned out of band), or with ``--previous`` against the previous
  version's stewards, including the update rule (same federation, newer version).
* ``show`` prints the same summary for any file, draft or signed, without verifying.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from federation.cli.keys_cmd import parse_transport_public, value_or_file
from federation.cli.manifest_summary import print_summary, summary
from federation.cli.output import notice, print_json
from federation.core.keys import KeyType
from federation.core.manifest import (
    Manifest,
    SignedManifest,
    accept_update,
    add_manifest_signature,
    manifest_json,
    parse_signed_manifest,
    signed_manifest_json,
    validate_manifest_value,
    verify_manifest,
)
from federation.errors import InputError
from federation.keyfile import load_private_key

Edit = Callable[[dict[str, Any], int], None]
"""Changes the manifest JSON in place, given the current unix time."""


def _now() -> int:
    return int(time.time())


def load_manifest(path: Path) -> SignedManifest:
    """Read a manifest file (signed or draft); errors name the field at fault."""
    return parse_signed_manifest(path.read_bytes())


def _validate(data: dict[str, Any]) -> Manifest:
    # Through JSON, so values are validated exactly as a manifest file's would be.
    return validate_manifest_value(Manifest, json.loads(json.dumps(data)))


def write_manifest(path: Path, signed: SignedManifest, *, overwrite: bool) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a manifest."""
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; pass --force to replace it", code="file_exists")
    text = json.dumps(signed_manifest_json(signed), indent=2, ensure_ascii=False) + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _unix(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise InputError(f"{what} must be unix seconds, got {text!r}", code="invalid_input")
    return int(text)


def parse_transport_spec(spec: str, now: int) -> dict[str, Any]:
    """``KEYID=BASE64[@NOT_BEFORE[-NOT_AFTER]]`` (or a ``.pub`` file instead of KEYID=BASE64).

    ``NOT_BEFORE`` defaults to now: a key is valid from when the stewards add it.
    """
    head, _, window = spec.partition("@")
    key_id, public_key = parse_transport_public(value_or_file(head))
    out: dict[str, Any] = {"key_id": key_id, "public_key": public_key, "not_before": now}
    if window:
        start, dash, end = window.partition("-")
        out["not_before"] = _unix(start, "transport key NOT_BEFORE")
        if dash:
            out["not_after"] = _unix(end, "transport key NOT_AFTER")
    return out


def _roles(values: list[str]) -> list[str]:
    return [r.strip() for v in values for r in v.split(",") if r.strip()]


def run_new(args: argparse.Namespace) -> int:
    """``manifest new``: a version-1 draft."""
    manifest = _validate(
        {
            "federation": args.federation,
            "version": 1,
            "issued_at": _now(),
            "members": [],
            "stewards": [value_or_file(v) for v in args.steward_key],
            "steward_quorum": args.quorum,
        }
    )
    write_manifest(args.out, SignedManifest(manifest=manifest, signatures=()), overwrite=args.force)
    print(f"wrote draft {args.out}: federation {manifest.federation} version 1, unsigned")
    return 0


def _edit(args: argparse.Namespace, change: Edit) -> int:
    """Apply ``change`` following the draft rules in the module docstring."""
    signed = load_manifest(args.file)
    data = manifest_json(signed.manifest)
    now = _now()
    if signed.signatures:
        if args.out is None:
            raise InputError(
                f"{args.file} is signed (version {data['version']}); write the draft of version"
                f" {data['version'] + 1} to a new file with --out (keep the signed one: the"
                " next version is verified against it)",
                code="manifest_is_signed",
            )
        data["version"] += 1
    data["issued_at"] = max(now, data["issued_at"])
    change(data, now)
    manifest = _validate(data)
    out: Path = args.out or args.file
    overwrite = args.force or out.resolve() == args.file.resolve()
    write_manifest(out, SignedManifest(manifest=manifest, signatures=()), overwrite=overwrite)
    print(
        f"wrote draft {out}: version {manifest.version}, {len(manifest.members)} members, unsigned"
    )
    return 0


def run_add_member(args: argparse.Namespace) -> int:
    """``manifest add-member``."""
    log_vkey = value_or_file(args.log_vkey)

    def change(data: dict[str, Any], now: int) -> None:
        member: dict[str, Any] = {
            "id": args.id,
            "name": args.name,
            "roles": _roles(args.roles),
            "endpoint": args.endpoint,
            "log_origin": args.log_origin or log_vkey.split("+", 1)[0],
            "log_vkey": log_vkey,
            "transport_keys": [parse_transport_spec(s, now) for s in args.transport_key],
        }
        if args.witness_vkey:
            member["witness_vkey"] = value_or_file(args.witness_vkey)
        data["members"].append(member)

    return _edit(args, change)


def _suspend(member: dict[str, Any], at: int | None, at_size: int | None, now: int) -> None:
    """Suspend ``member`` (manifest JSON) by time, by log size, or both.

    Without ``--at-size`` the suspension is by time (``--at``, default now).  A suspended
    member may gain the rule it lacks (typically: suspended by time at once, then by the
    witnessed size the stewards vouch for) or a lower ``suspended_size``; anything else is
    refused here rather than by every node (``manifest_suspension_weakened``, or a
    ``suspended_at`` that would change).
    """
    who = repr(member["id"])
    if member.get("status") != "suspended":
        member["status"] = "suspended"
        if at is not None or at_size is None:
            member["suspended_at"] = now if at is None else at
        if at_size is not None:
            member["suspended_size"] = at_size
        return
    if at is None and at_size is None:
        raise InputError(f"member {who} is already suspended", field="id")
    if at is not None:
        if "suspended_at" in member:
            raise InputError(
                f"member {who} is already suspended at {member['suspended_at']}", field="at"
            )
        member["suspended_at"] = at
    if at_size is not None:
        held = member.get("suspended_size")
        if held is not None and at_size > held:
            raise InputError(
                f"member {who} is suspended at log size {held}; a later version may lower it,"
                f" not raise it to {at_size}",
                code="manifest_suspension_weakened",
                field="at_size",
            )
        member["suspended_size"] = at_size


def run_suspend(args: argparse.Namespace) -> int:
    """``manifest suspend``."""

    def change(data: dict[str, Any], now: int) -> None:
        for member in data["members"]:
            if member["id"] == args.id:
                _suspend(member, args.at, args.at_size, now)
                return
        raise InputError(
            f"no member {args.id!r} in the manifest", code="unknown_member", field="id"
        )

    return _edit(args, change)


_POLICY_OPTIONS = {
    "pdq_threshold": "pdq_threshold",
    "min_quality": "min_pdq_quality",
    "witness_quorum": "witness_quorum",
    "quarantine_false_positives": "quarantine_false_positives",
}


def run_set_policy(args: argparse.Namespace) -> int:
    """``manifest set-policy``."""
    changes = {field: getattr(args, opt) for opt, field in _POLICY_OPTIONS.items()}
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        raise InputError("set-policy needs at least one policy option", code="invalid_input")

    def change(data: dict[str, Any], now: int) -> None:
        data["policy"] = {**data.get("policy", {}), **changes}

    return _edit(args, change)


def run_set_stewards(args: argparse.Namespace) -> int:
    """``manifest set-stewards``: the stewards (and quorum) who sign the version after this."""

    def change(data: dict[str, Any], now: int) -> None:
        data["stewards"] = [value_or_file(v) for v in args.steward_key]
        data["steward_quorum"] = args.quorum

    return _edit(args, change)


def run_sign(args: argparse.Namespace) -> int:
    """``manifest sign``: add one steward signature, keep the version."""
    signed = load_manifest(args.file)
    key = load_private_key(args.key)
    if key.key_type != KeyType.ED25519:
        raise InputError("steward keys are note keys (type 0x01)", code="invalid_key", field="key")
    key_id = key.public.key_id.hex()
    if key_id not in signed.manifest.steward_keys():
        notice(
            f"key {key_id} is not a steward of this version; that is right only if it is a"
            " steward of the previous version"
        )
    result = add_manifest_signature(signed, key)
    out: Path = args.out or args.file
    write_manifest(out, result, overwrite=True)
    print(f"signed {out} as {key.name} ({key_id}): {len(result.signatures)} signatures")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """``manifest verify``: exit 0 with a summary, or 1 with the reason (raised)."""
    signed = load_manifest(args.file)
    previous = load_manifest(args.previous) if args.previous else None
    if previous is None:
        verify_manifest(signed)
    else:
        accept_update(previous, signed)
    info = summary(signed, previous.manifest if previous else None, verified=True)
    if args.json:
        print_json(info)
    else:
        print_summary(info)
    return 0


def run_show(args: argparse.Namespace) -> int:
    """``manifest show``: the summary of a draft or signed file, without verifying."""
    info = summary(load_manifest(args.file), None, verified=False)
    if args.json:
        print_json(info)
    else:
        print_summary(info)
    return 0


def _file_args(parser: argparse.ArgumentParser, *, out_help: str) -> None:
    parser.add_argument("file", type=Path, metavar="FILE")
    parser.add_argument("--out", type=Path, metavar="FILE", help=out_help)
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")


def register(subparsers: Any) -> None:
    """Add ``manifest`` and its actions."""
    parser = subparsers.add_parser(
        "manifest",
        help="write, sign and verify the membership manifest (stewards)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="manifest_command", metavar="ACTION")
    sub.required = True
    edit_out = "write the draft here (required when FILE is signed; default: edit FILE)"

    new = sub.add_parser("new", help="start a version-1 draft")
    new.add_argument("--federation", required=True, metavar="NAME")
    new.add_argument(
        "--steward-key",
        required=True,
        action="extend",
        nargs="+",
        metavar="VKEY",
        help="steward verifier key (or a .pub file); repeat or list several",
    )
    new.add_argument("--quorum", required=True, type=int, metavar="K")
    new.add_argument("--out", required=True, type=Path, metavar="FILE")
    new.add_argument("--force", action="store_true", help="replace an existing FILE")
    new.set_defaults(func=run_new)

    add = sub.add_parser("add-member", help="add a member")
    _file_args(add, out_help=edit_out)
    add.add_argument("--id", required=True, help="member id, e.g. police.example")
    add.add_argument("--name", required=True, help="organisation name")
    add.add_argument(
        "--roles",
        required=True,
        action="append",
        help="comma-separated: submitter, consumer, auditor, witness",
    )
    add.add_argument("--endpoint", required=True, help="base URL of the member's node")
    add.add_argument("--log-origin", help="checkpoint origin (default: the log vkey's name)")
    add.add_argument("--log-vkey", required=True, metavar="VKEY", help="vkey or .pub file")
    add.add_argument(
        "--transport-key",
        required=True,
        action="append",
        metavar="KEYID=BASE64[@NOT_BEFORE[-NOT_AFTER]]",
        help="request-signing key (or a .pub file) with optional unix validity; repeatable",
    )
    add.add_argument("--witness-vkey", metavar="VKEY", help="cosignature vkey (witnesses)")
    add.set_defaults(func=run_add_member)

    suspend = sub.add_parser(
        "suspend",
        help="suspend a member (by time, by log size, or both)",
        description=(
            "Suspend a member: its requests get 403 and its entries are refused -- those"
            " created at or after --at, and those at log index >= --at-size whatever their"
            " created time.  After a log-key compromise use --at-size: a thief can back-date"
            " created, not a log position.  Give the size of the last checkpoint of the"
            " member's log that was witnessed (cosigned) before the compromise."
        ),
    )
    _file_args(suspend, out_help=edit_out)
    suspend.add_argument("--id", required=True)
    suspend.add_argument(
        "--at",
        type=int,
        metavar="UNIX",
        help="refuse entries created at or after this time (default: now, unless --at-size)",
    )
    suspend.add_argument(
        "--at-size",
        type=int,
        metavar="N",
        help="refuse entries at log index >= N: the log size the stewards vouch for",
    )
    suspend.set_defaults(func=run_suspend)

    policy = sub.add_parser("set-policy", help="change federation policy")
    _file_args(policy, out_help=edit_out)
    policy.add_argument("--pdq-threshold", type=int, metavar="N")
    policy.add_argument("--min-quality", type=int, metavar="N")
    policy.add_argument("--witness-quorum", type=int, metavar="N")
    policy.add_argument("--quarantine-false-positives", type=int, metavar="N")
    policy.set_defaults(func=run_set_policy)

    stewards = sub.add_parser("set-stewards", help="replace the stewards of the next version")
    _file_args(stewards, out_help=edit_out)
    stewards.add_argument("--steward-key", required=True, action="extend", nargs="+")
    stewards.add_argument("--quorum", required=True, type=int, metavar="K")
    stewards.set_defaults(func=run_set_stewards)

    sign = sub.add_parser("sign", help="add a steward signature")
    sign.add_argument("file", type=Path, metavar="FILE")
    sign.add_argument("--key", required=True, type=Path, metavar="STEWARD_KEY_FILE")
    sign.add_argument("--out", type=Path, metavar="FILE", help="default: sign FILE in place")
    sign.set_defaults(func=run_sign)

    verify = sub.add_parser("verify", help="check the steward quorum (exit 1 if it fails)")
    verify.add_argument("file", type=Path, metavar="FILE")
    verify.add_argument(
        "--previous",
        type=Path,
        metavar="PREV_FILE",
        help="verify as an update of this version (trusted as given: the one your node holds)",
    )
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.set_defaults(func=run_verify)

    show = sub.add_parser("show", help="summarise a manifest or draft without verifying")
    show.add_argument("file", type=Path, metavar="FILE")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(func=run_show)
