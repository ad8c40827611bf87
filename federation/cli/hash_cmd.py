"""``hashfed hash FILE...``: hash images locally and print PDQ, quality, MD5 and SHA-256.

One line per file, in argument order, so the output pipes into ``hashfed submit`` or a
spreadsheet.  A file that cannot be hashed gets an error line on stderr and the rest still
print; the exit code is then 1, so a script notices without losing the good results.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from federation.errors import FederationError
from federation.hashing import DIHEDRAL_TRANSFORMS, hash_file

EXIT_OK = 0
EXIT_SOME_FAILED = 1


def register(subparsers: Any) -> None:
    """Add the ``hash`` subcommand."""
    parser = subparsers.add_parser(
        "hash",
        help="hash image files locally (PDQ, quality, MD5, SHA-256)",
        description="Hash image files locally; only these hashes are ever shared.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="image files to hash")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--dihedral", action="store_true", help="also print the 8 rotated/flipped PDQ hashes"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Hash every file; report failures per file on stderr."""
    failed = False
    for path in args.files:
        try:
            h = hash_file(path, dihedral=args.dihedral)
        except (FederationError, OSError) as exc:
            failed = True
            if isinstance(exc, FederationError):
                reason = f"[{exc.code}] {exc.message}"
            else:
                reason = f"[file_unreadable] {exc.strerror or exc}"
            print(f"hashfed hash: {path}: error {reason}", file=sys.stderr)
            continue
        if args.json:
            record: dict[str, object] = {
                "path": path,
                "pdq": h.pdq,
                "quality": h.quality,
                "md5": h.md5,
                "sha256": h.sha256,
                "low_quality": h.low_quality,
            }
            if h.dihedral is not None:
                record["dihedral"] = dict(zip(DIHEDRAL_TRANSFORMS, h.dihedral, strict=True))
            print(json.dumps(record, sort_keys=True))
        else:
            print(f"{h.pdq} {h.quality:3d} {h.md5} {h.sha256} {path}")
            if h.dihedral is not None:
                for name, value in zip(DIHEDRAL_TRANSFORMS, h.dihedral, strict=True):
                    print(f"  {name:<11} {value}")
    sys.stdout.flush()
    return EXIT_SOME_FAILED if failed else EXIT_OK
