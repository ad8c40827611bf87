"""Receipts: offline-verifiable proof that an entry is in a member's log (c2sp.org/tlog-proof).

A receipt is a C2SP tlog-proof@v1 text whose ``extra`` line carries the entry's leaf bytes, so
that with nothing but the member's log verifier key anyone can check, offline, that the entry
was signed by the member and is included in a tree head the member signed::

    c2sp.org/tlog-proof@v1
    extra <base64 leaf bytes>
    index <decimal>
    <base64 proof hash>            (one line each, leaf's sibling first)
    <empty line>
    <checkpoint signed note>

The same key signs checkpoints (note key, type 0x01) and entries (domain separated), so one
verifier key suffices.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from federation.core.checkpoint import Checkpoint, open_checkpoint
from federation.core.entries import SignedEntry, leaf_hash, parse_leaf, verify_entry
from federation.core.keys import PublicKey
from federation.core.merkle import verify_inclusion
from federation.core.note import b64decode_canonical
from federation.errors import VerificationError

HEADER = "c2sp.org/tlog-proof@v1"


def _malformed(reason: str) -> VerificationError:
    return VerificationError(f"malformed receipt: {reason}", code="malformed_receipt")


@dataclass(frozen=True)
class TlogProof:
    """A parsed tlog-proof: index, inclusion proof, checkpoint note and optional extra data."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: str
    """The signed checkpoint note, verbatim."""
    extra: bytes | None = None

    def serialise(self) -> str:
        """The text form (see module docstring)."""
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode())
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(h).decode() for h in self.hashes)
        return "\n".join(lines) + "\n\n" + self.checkpoint

    @classmethod
    def parse(cls, text: str) -> TlogProof:
        """Strict parse; raises VerificationError ``malformed_receipt``."""
        head, sep, checkpoint = text.partition("\n\n")
        if not sep or not checkpoint:
            raise _malformed("missing the empty line before the checkpoint")
        lines = head.split("\n")
        if lines[0] != HEADER:
            raise _malformed(f"first line must be {HEADER}")
        rest = lines[1:]
        extra = None
        if rest and rest[0].startswith("extra "):
            try:
                extra = b64decode_canonical(rest[0][len("extra ") :])
            except ValueError:
                raise _malformed("extra is not canonical base64") from None
            rest = rest[1:]
        if not rest or not rest[0].startswith("index "):
            raise _malformed("missing index line")
        digits = rest[0][len("index ") :]
        if not digits.isascii() or not digits.isdigit() or (digits != "0" and digits[0] == "0"):
            raise _malformed("index must be a decimal number without leading zeros")
        hashes = []
        for line in rest[1:]:
            try:
                h = b64decode_canonical(line)
            except ValueError:
                raise _malformed("proof hash is not canonical base64") from None
            if len(h) != 32:
                raise _malformed("proof hash must be 32 bytes")
            hashes.append(h)
        return cls(int(digits), tuple(hashes), checkpoint, extra)


@dataclass(frozen=True)
class VerifiedReceipt:
    """What a verified receipt proves."""

    checkpoint: Checkpoint
    index: int
    entry: SignedEntry


def verify_receipt(text: str, log_key: PublicKey) -> VerifiedReceipt:
    """Verify a receipt with only the member's log verifier key; raises VerificationError.

    Checks, in order: the checkpoint is signed by ``log_key`` for its origin; the leaf bytes
    are a canonical signed entry whose signature verifies with ``log_key``; the leaf is
    included at ``index`` in the checkpoint's tree.
    """
    proof = TlogProof.parse(text)
    if proof.extra is None:
        raise _malformed("receipt carries no leaf bytes (extra line)")
    checkpoint = open_checkpoint(proof.checkpoint, log_key, expected_origin=log_key.name)
    entry = parse_leaf(proof.extra)
    verify_entry(entry, log_key)
    verify_inclusion(
        leaf_hash(proof.extra), proof.index, checkpoint.size, proof.hashes, checkpoint.root
    )
    return VerifiedReceipt(checkpoint, proof.index, entry)
