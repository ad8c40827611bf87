"""``hashfed keys``: generate key pairs and show the public half of key files.

Three kinds of key, one file format (C2SP ``PRIVATE+KEY+...`` strings, mode 0600, written by
:mod:`federation.keyfile`):

``note``
    Type 0x01 signed-note key.  A member's *log key*, named after its log origin
    (``police.example/hashfed``): it signs checkpoints and entries.  Stewards use note keys
    too, to sign manifests.  The public form is the C2SP verifier key (vkey).
``cosignature``
    Type 0x04 tlog-cosignature/v1 key of a witness.  Public form: the vkey.
``transport``
    Ed25519 key that signs HTTP requests (RFC 9421).  NAME is its key id in the manifest.  The
    public form is ``KEYID=BASE64`` (the raw 32-byte key), exactly the value that
    ``hashfed manifest add-member --transport-key`` takes.

``NAME.pub`` next to the private key holds that public form, so it can be mailed to the
stewards as is.  Nothing here ever prints a private key.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federation.cli.output import print_fields, print_json
from federation.core.keys import KeyType, PublicKey, SigningKey
from federation.errors import InputError
from federation.keyfile import load_private_key, save_private_key

KEY_TYPES: dict[str, KeyType] = {
    "note": KeyType.ED25519,
    "cosignature": KeyType.COSIGNATURE_V1,
    "transport": KeyType.ED25519,
}
"""CLI key type -> C2SP type byte (a transport key is a plain Ed25519 key)."""

_TRANSPORT_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def key_file_stem(name: str) -> str:
    """A file name stem for a key name: ``police.example/hashfed`` -> ``police.example_hashfed``.

    Log origins contain ``/`` (and may contain ``:``), which would turn the key file into a
    path elsewhere; a leading dot would hide it or, as ``..``, escape the directory.
    """
    stem = _UNSAFE_FILE_CHARS.sub("_", name)
    if stem.startswith("."):
        stem = "_" + stem[1:]
    return stem


@dataclass(frozen=True)
class PublicInfo:
    """The public half of a key, in the forms the manifest and node config use."""

    name: str
    type: str
    """``note``, ``cosignature``, ``transport``, or ``ed25519`` (a 0x01 private key could be
    a note key or a transport key; the file does not say which)."""
    public_key: str
    """Standard base64 of the 32 raw public key bytes."""
    key_id: str
    """C2SP hex8 key id, or the transport key id."""
    vkey: str | None
    """C2SP verifier key (not for transport keys)."""

    def public_line(self) -> str:
        """What goes into ``NAME.pub``: the vkey, or ``KEYID=BASE64`` for transport keys."""
        return self.vkey if self.vkey is not None else f"{self.key_id}={self.public_key}"

    def as_json(self) -> dict[str, Any]:
        """JSON fields (``vkey`` absent for transport keys)."""
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "public_key": self.public_key,
            "key_id": self.key_id,
        }
        if self.vkey is not None:
            out["vkey"] = self.vkey
        return out


def _info(key: PublicKey, kind: str) -> PublicInfo:
    raw = base64.b64encode(key.raw).decode()
    if kind == "transport":
        return PublicInfo(key.name, kind, raw, key.name, None)
    return PublicInfo(key.name, kind, raw, key.key_id.hex(), key.vkey())


def value_or_file(value: str) -> str:
    """A key given inline or as the path of a file holding it (e.g. a ``.pub`` file).

    Keys are long and error-prone to paste, so every option that takes a public key also takes
    the file ``keys generate`` wrote.  A vkey is never an existing file name in practice.
    """
    path = Path(value)
    if "\n" not in value and path.is_file():
        return path.read_text(encoding="utf-8").strip()
    return value.strip()


def check_transport_key_id(key_id: str) -> str:
    """Transport key ids are RFC 9421 ``keyid`` values: 1-128 of ``[A-Za-z0-9._:-]``."""
    if not _TRANSPORT_ID_RE.fullmatch(key_id):
        raise InputError(
            f"transport key id {key_id!r} must be 1-128 characters of A-Z, a-z, 0-9, '.', '_',"
            " ':', '-'",
            code="invalid_key_name",
            field="name",
        )
    return key_id


def parse_transport_public(text: str) -> tuple[str, str]:
    """``KEYID=BASE64`` -> (key id, base64); the base64 must be 32 bytes, canonical."""
    key_id, sep, b64 = text.strip().partition("=")
    if not sep:
        raise InputError("transport key must look like KEYID=BASE64", code="invalid_key")
    check_transport_key_id(key_id)
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(
            f"transport key {key_id!r} is not valid base64", code="invalid_key"
        ) from None
    if len(raw) != 32 or base64.b64encode(raw).decode() != b64:
        raise InputError(
            f"transport key {key_id!r} must be canonical base64 of 32 bytes", code="invalid_key"
        )
    return key_id, b64


def generate_key(
    name: str, kind: str, out_dir: Path, *, force: bool = False
) -> tuple[PublicInfo, Path, Path]:
    """Create ``out_dir/STEM.key`` (0600) and ``STEM.pub``; returns (info, key path, pub path).

    Refuses to replace an existing private key unless ``force``; the .pub is written only after
    the private key is safely on disk, so a failure never leaves a public key without its
    private half.
    """
    if kind == "transport":
        check_transport_key_id(name)
    key = SigningKey.generate(name, KEY_TYPES[kind])
    stem = key_file_stem(name)
    key_path = out_dir / f"{stem}.key"
    pub_path = out_dir / f"{stem}.pub"
    save_private_key(key_path, key, overwrite=force)
    info = _info(key.public, kind)
    pub_path.write_text(info.public_line() + "\n", encoding="utf-8")
    return info, key_path, pub_path


def public_info_of_private(key: SigningKey) -> PublicInfo:
    """Public info of a loaded private key (type ``ed25519`` or ``cosignature``)."""
    kind = "cosignature" if key.key_type == KeyType.COSIGNATURE_V1 else "ed25519"
    return _info(key.public, kind)


def read_key_file(path: Path) -> PublicInfo:
    """The public half of a private key file (checked for mode 0600) or of a ``.pub`` file."""
    text = path.read_text(encoding="utf-8").strip()
    if text.startswith("PRIVATE+KEY+"):
        return public_info_of_private(load_private_key(path))
    if "\n" in text:
        raise InputError(f"{path} holds more than one line; expected one key", code="invalid_key")
    try:
        key = PublicKey.parse(text)
    except InputError:
        key_id, b64 = parse_transport_public(text)
        return PublicInfo(key_id, "transport", b64, key_id, None)
    kind = "cosignature" if key.key_type == KeyType.COSIGNATURE_V1 else "note"
    return _info(key, kind)


def register(subparsers: Any) -> None:
    """Add ``keys generate`` and ``keys show``."""
    parser = subparsers.add_parser(
        "keys",
        help="generate key pairs, show public keys",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION")
    sub.required = True

    gen = sub.add_parser(
        "generate",
        help="create NAME.key (0600) and NAME.pub",
        description="Create a private key file (mode 0600) and its public form. NAME is the log"
        " origin for a log key, the witness name for a cosignature key, the key id for a"
        " transport key; '/' and other unsafe characters become '_' in the file name.",
    )
    gen.add_argument("name", metavar="NAME")
    gen.add_argument("--type", choices=tuple(KEY_TYPES), default="note", dest="key_type")
    gen.add_argument("--out", type=Path, default=Path("."), metavar="DIR", help="default: .")
    gen.add_argument("--force", action="store_true", help="replace an existing key file")
    gen.add_argument("--json", action="store_true", help="print one JSON object")
    gen.set_defaults(func=run_generate)

    show = sub.add_parser(
        "show",
        help="print the public half of a key file",
        description="Print the public half of a private key file or a .pub file (never the"
        " private key).",
    )
    show.add_argument("file", type=Path, metavar="FILE")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(func=run_show)


def run_generate(args: argparse.Namespace) -> int:
    """``keys generate``."""
    info, key_path, pub_path = generate_key(args.name, args.key_type, args.out, force=args.force)
    if args.json:
        print_json(
            {
                **info.as_json(),
                "private_key_file": str(key_path),
                "public_key_file": str(pub_path),
            }
        )
        return 0
    pairs: list[tuple[str, object]] = [
        ("type", info.type),
        ("private key", f"{key_path} (mode 0600; keep it secret)"),
        ("public key", pub_path),
    ]
    if info.vkey is None:
        pairs.append(("manifest form", info.public_line()))
    print_fields(pairs)
    # The last line is the one to copy (`tail -1`): the vkey, or for a transport key the raw
    # base64 public key that node configs take.
    print(info.vkey if info.vkey is not None else info.public_key)
    return 0


def run_show(args: argparse.Namespace) -> int:
    """``keys show``."""
    info = read_key_file(args.file)
    if args.json:
        print_json(info.as_json())
        return 0
    pairs: list[tuple[str, object]] = [
        ("name", info.name),
        ("type", info.type),
        ("key id", info.key_id),
        ("public key", info.public_key),
    ]
    if info.vkey is not None:
        pairs.append(("vkey", info.vkey))
    print_fields(pairs)
    return 0
