"""``hashfed init``: a new member's first step — keys and a commented ``node.toml``.

Generates whatever keys are missing (an existing key is reused, never replaced: a log key
that changes breaks the member's log), writes a node configuration with sane defaults for the
member's role, and prints exactly what the member sends to the stewards: public keys only.

The config is validated with the real loader (:mod:`federation.config`) *before* any file is
written, so a bad member id or listen address leaves nothing behind.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federation.cli.keys_cmd import (
    PublicInfo,
    check_transport_key_id,
    generate_key,
    key_file_stem,
    public_info_of_private,
)
from federation.cli.output import print_fields, print_json
from federation.config import parse_config
from federation.core.ids import check_member_id
from federation.core.keys import KeyType, SigningKey
from federation.errors import InputError
from federation.keyfile import load_private_key

ROLES = ("submitter", "consumer", "auditor", "witness")

CLIENT_ROLES: dict[str, tuple[str, ...]] = {
    "submitter": ("submit", "match", "admin"),
    "consumer": ("match", "admin"),
    "auditor": ("admin",),
    "witness": ("admin",),
}
"""What the member's own CLI key may do on its node, by member role."""


@dataclass(frozen=True)
class KeySpec:
    """One key ``init`` makes sure exists."""

    label: str
    """Short name used as the dict key: ``log``, ``transport``, ``client``, ``witness``."""
    name: str
    kind: str
    """``note``, ``cosignature`` or ``transport`` (see :mod:`federation.cli.keys_cmd`)."""


def _q(value: str) -> str:
    """A TOML basic string (JSON string escapes are valid TOML; non-ASCII stays readable)."""
    return json.dumps(value, ensure_ascii=False)


def _rel(path: Path, base: Path) -> str:
    """``path`` relative to the config's directory when below it, else absolute."""
    absolute = path.absolute()
    try:
        return absolute.relative_to(base).as_posix()
    except ValueError:
        return str(absolute)


def ensure_key(spec: KeySpec, keys_dir: Path, created: list[Path]) -> tuple[PublicInfo, Path]:
    """Load ``keys_dir/STEM.key`` if present (checking name and type), else generate it."""
    path = keys_dir / f"{key_file_stem(spec.name)}.key"
    if not path.exists():
        info, key_path, pub_path = generate_key(spec.name, spec.kind, keys_dir)
        created.extend((key_path, pub_path))
        return info, key_path
    key = load_private_key(path)
    want = KeyType.COSIGNATURE_V1 if spec.kind == "cosignature" else KeyType.ED25519
    if key.name != spec.name or key.key_type != want:
        raise InputError(
            f"existing {path} holds key {key.name!r} of type 0x{key.key_type:02x}; the"
            f" {spec.label} key must be {spec.name!r} of type 0x{want:02x} (move the file away"
            " or choose another --keys-dir)",
            code="key_mismatch",
        )
    info = public_info_of_private(key)
    if spec.kind == "transport":
        info = PublicInfo(info.name, "transport", info.public_key, info.name, None)
    return info, path


def render_config(
    args: argparse.Namespace, base: Path, paths: dict[str, Path], client_public_key: str
) -> str:
    """The commented TOML text; ``paths`` are the key files by label (log, transport, ...)."""
    role = args.role
    client_roles = ", ".join(_q(r) for r in CLIENT_ROLES[role])
    witness_note = ""
    if "witness" in paths:
        witness_note = (
            f"# Witness cosignature key (type 0x04): {_rel(paths['witness'], base)}\n"
            "# Its vkey goes into the manifest as the member's witness_vkey.\n"
        )
    return f"""\
# hashfed node configuration for member {args.member_id} (role: {role}).
# Written by `hashfed init`.  Relative paths are relative to this file's directory.
# Environment overrides: HASHFED_DATABASE_URL, HASHFED_LOG_KEY, HASHFED_TRANSPORT_KEY,
# HASHFED_MANIFEST, HASHFED_LISTEN.

[node]
# This member's id; the stewards list it in the federation manifest.
member_id = {_q(args.member_id)}
# host:port to bind.  Put TLS in front of it (see deploy/); port 0 picks a free port.
listen = {_q(args.listen)}
# Seconds in-flight requests get to finish on SIGTERM.
shutdown_timeout = 10.0

[database]
# sqlite:///file.db (embedded default, relative to this file) or
# postgresql://user@host/db (several API workers sharing one database).
url = {_q(args.database)}

[keys]
# Log key (0600): signs this member's checkpoints and entries; its name is the log origin
# {args.log_origin}.  Losing it means the log can never be extended: back it up offline.
log_key = {_q(_rel(paths["log"], base))}
# Transport key (0600): signs requests to peers (RFC 9421 HTTP Message Signatures).
transport_key = {_q(_rel(paths["transport"], base))}
# The manifest's key id for transport_key.
transport_key_id = {_q(args.transport_key_id)}
{witness_note}
[manifest]
# The signed membership manifest from the stewards; check it with `hashfed manifest verify`.
path = {_q(args.manifest)}

# The member's own clients (this CLI, an upload pipeline).  Each signs its requests with its
# own key; the private half stays with the client ({_rel(paths["client"], base)}).
[[clients]]
key_id = {_q(args.member_id + "-cli")}
public_key = {_q(client_public_key)}
roles = [{client_roles}]

[limits]
# Largest request body in bytes (bigger requests get 413 body_too_large).
max_body_bytes = 4194304
# Most entries in one submissions/retractions/opinions request.
max_batch = 1000
"""


def _specs(args: argparse.Namespace) -> list[KeySpec]:
    specs = [
        KeySpec("log", args.log_origin, "note"),
        KeySpec("transport", args.transport_key_id, "transport"),
        KeySpec("client", args.member_id + "-cli", "transport"),
    ]
    if args.role == "witness":
        specs.append(KeySpec("witness", args.member_id + "/witness", "cosignature"))
    return specs


def run(args: argparse.Namespace) -> int:
    """Validate, ensure keys, write the config, print what to send to the stewards."""
    out: Path = args.out.absolute()
    base = out.parent
    if out.exists() and not args.force:
        raise InputError(f"{args.out} exists; pass --force to replace it", code="file_exists")
    try:
        check_member_id(args.member_id)
    except ValueError as exc:
        raise InputError(
            f"--member-id: {exc}", code="invalid_member_id", field="member_id"
        ) from None
    args.log_origin = args.log_origin or f"{args.member_id}/hashfed"
    args.transport_key_id = args.transport_key_id or f"{args.member_id}-t1"
    check_transport_key_id(args.transport_key_id)
    SigningKey.from_seed(args.log_origin, bytes(32))  # raises InputError for a bad key name
    keys_dir: Path = (args.keys_dir or base / "keys").absolute()
    specs = _specs(args)
    # Validate the config with placeholder key material before touching the disk.
    probe = {s.label: keys_dir / f"{key_file_stem(s.name)}.key" for s in specs}
    placeholder = "A" * 43 + "="
    try:
        parse_config(
            tomllib.loads(render_config(args, base, probe, placeholder)), base=base, env={}
        )
    except tomllib.TOMLDecodeError as exc:  # only a value we failed to escape can cause this
        raise InputError(f"cannot write a valid config: {exc}", code="invalid_input") from None

    created: list[Path] = []
    infos: dict[str, PublicInfo] = {}
    paths: dict[str, Path] = {}
    for spec in specs:
        infos[spec.label], paths[spec.label] = ensure_key(spec, keys_dir, created)
    text = render_config(args, base, paths, infos["client"].public_key)
    parse_config(tomllib.loads(text), base=base, env={})
    out.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if args.force else os.O_EXCL)
    with os.fdopen(os.open(out, flags, 0o644), "w", encoding="utf-8") as handle:
        handle.write(text)
    _report(args, infos, paths, created)
    return 0


def _report(
    args: argparse.Namespace,
    infos: dict[str, PublicInfo],
    paths: dict[str, Path],
    created: list[Path],
) -> None:
    log, transport = infos["log"], infos["transport"]
    witness = infos.get("witness")
    send: dict[str, Any] = {
        "member_id": args.member_id,
        "roles": [args.role],
        "log_origin": args.log_origin,
        "log_vkey": log.vkey,
        "transport_key": transport.public_line(),
    }
    if witness is not None:
        send["witness_vkey"] = witness.vkey
    if args.json:
        print_json(
            {
                "config": str(args.out),
                "send_to_stewards": send,
                "client_key_id": infos["client"].key_id,
                "key_files": {k: str(v) for k, v in paths.items()},
                "created": [str(p) for p in created],
            }
        )
        return
    print(f"wrote {args.out} for member {args.member_id} ({args.role})")
    for path in created:
        print(f"generated {path}")
    print("\nSend these public keys to the federation stewards (never the .key files):")
    print_fields(
        [(k.replace("_", " "), ",".join(v) if isinstance(v, list) else v) for k, v in send.items()]
    )
    command = [
        "hashfed", "manifest", "add-member", "MANIFEST.json", "--id", args.member_id,
        "--name", "ORGANISATION", "--roles", args.role,
        "--endpoint", args.endpoint or "https://YOUR-NODE.EXAMPLE",
        "--log-vkey", str(log.vkey), "--transport-key", transport.public_line(),
    ]  # fmt: skip
    if witness is not None:
        command += ["--witness-vkey", str(witness.vkey)]
    print("\nThe stewards add you with:\n  " + shlex.join(command))
    print(
        f"\nThen save the signed manifest as {args.manifest} (next to {args.out.name}) and run"
        f" `hashfed serve --config {args.out}`."
    )


def register(subparsers: Any) -> None:
    """Add ``init``."""
    parser = subparsers.add_parser(
        "init",
        help="create a member's keys and a commented node.toml",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--member-id", required=True, metavar="ID")
    parser.add_argument("--role", required=True, choices=ROLES)
    parser.add_argument("--out", type=Path, default=Path("node.toml"), metavar="FILE")
    parser.add_argument("--listen", default="127.0.0.1:8441", metavar="HOST:PORT")
    parser.add_argument("--database", default="sqlite:///hashfed.db", metavar="URL")
    parser.add_argument("--keys-dir", type=Path, metavar="DIR", help="default: keys/ by FILE")
    parser.add_argument("--manifest", default="manifest.json", metavar="PATH")
    parser.add_argument("--log-origin", metavar="ORIGIN", help="default: ID/hashfed")
    parser.add_argument("--transport-key-id", metavar="KEYID", help="default: ID-t1")
    parser.add_argument("--endpoint", metavar="URL", help="public URL, for the printed command")
    parser.add_argument("--force", action="store_true", help="replace an existing FILE")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)
