"""Log tree heads as C2SP tlog-checkpoint v1.0.0 signed notes.

The note text is exactly::

    <origin>\\n
    <tree size in ASCII decimal, no leading zeros>\\n
    <base64 of the 32-byte RFC 6962 root hash>\\n
    [<extension line>\\n ...]

signed by the log's Ed25519 note key (type 0x01) and, optionally, cosigned by witnesses
(type 0x04, :mod:`federation.core.cosignature`).  Parsing is strict: a checkpoint has exactly
one text form, so two nodes comparing checkpoints byte for byte (split-view evidence) agree on
what they hold.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass

from federation.core.cosignature import verify_cosignature
from federation.core.keys import KeyType, PublicKey, SigningKey
from federation.core.note import SignedNote, b64decode_canonical, sign_note, verify_note
from federation.errors import InputError, VerificationError

ROOT_LEN = 32
MAX_TREE_SIZE = 2**64 - 1  # tree sizes are u64 on the wire (tlog-tiles, tlog-witness)
_SIZE_RE = re.compile(r"0|[1-9][0-9]{0,19}")  # ASCII digits only; str.isdigit takes any script


def _malformed(reason: str) -> VerificationError:
    return VerificationError(f"malformed checkpoint: {reason}", code="malformed_checkpoint")


def _check_line(line: str, what: str) -> None:
    if not line:
        raise _malformed(f"{what} must be non-empty")
    for ch in line:
        if ch < " " or "\ud800" <= ch <= "\udfff":
            raise _malformed(f"{what} contains control character U+{ord(ch):04X}")


@dataclass(frozen=True)
class Checkpoint:
    """A log's signed statement of its tree size and root hash."""

    origin: str
    """The log identity (first line); for hashfed the member's log origin from the manifest."""
    size: int
    """Number of leaves in the tree."""
    root: bytes
    """RFC 6962 Merkle tree hash of the first ``size`` leaves (32 bytes)."""
    extensions: tuple[str, ...] = ()
    """Opaque extra lines (NOT RECOMMENDED by the spec; hashfed itself writes none)."""

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if isinstance(self.size, bool) or not 0 <= self.size <= MAX_TREE_SIZE:
            raise _malformed(f"tree size {self.size} outside 0..2^64-1")
        if len(self.root) != ROOT_LEN:
            raise _malformed("root hash must be 32 bytes")
        for line in self.extensions:
            _check_line(line, "extension line")

    def body(self) -> str:
        """The note text: origin, size, base64 root and extension lines, each ending in \\n."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "".join(line + "\n" for line in (*lines, *self.extensions))

    @classmethod
    def parse_body(cls, text: str) -> Checkpoint:
        """Parse a checkpoint note text; raises VerificationError ``malformed_checkpoint``."""
        if not text.endswith("\n"):
            raise _malformed("text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise _malformed("needs origin, size and root hash lines")
        origin, size_text, root_text, *extensions = lines
        if not _SIZE_RE.fullmatch(size_text):
            raise _malformed(f"tree size {size_text[:40]!r} is not decimal without leading zeros")
        try:
            root = b64decode_canonical(root_text)
        except ValueError as exc:
            raise _malformed(f"root hash: {exc}") from None
        return cls(origin, int(size_text), root, tuple(extensions))


def sign_checkpoint(cp: Checkpoint, key: SigningKey) -> SignedNote:
    """Sign ``cp`` as a note with the log's Ed25519 key.

    The caller must never sign a checkpoint inconsistent with one it signed before (spec
    §Signatures); that is the log writer's job, which owns the tree state.
    """
    return sign_note(cp.body(), [key])


def open_checkpoint(
    note: SignedNote | str | bytes,
    origin_key: PublicKey,
    *,
    expected_origin: str | None = None,
) -> Checkpoint:
    """Verify the log's signature on a checkpoint note and return the checkpoint.

    Other signatures (witnesses, a rotated key) are ignored here.  Raises VerificationError:
    ``malformed_note``, ``bad_note_signature``, ``unverified_note``, ``malformed_checkpoint``
    or ``origin_mismatch``.
    """
    if origin_key.key_type != KeyType.ED25519:
        raise InputError(
            f"log key {origin_key.name} must be an ED25519 note key, not a cosignature key",
            code="invalid_key",
        )
    signed = note if isinstance(note, SignedNote) else SignedNote.parse(note)
    verify_note(signed, [origin_key])
    cp = Checkpoint.parse_body(signed.text)
    if expected_origin is not None and cp.origin != expected_origin:
        raise VerificationError(
            f"checkpoint origin {cp.origin!r} is not the expected {expected_origin!r}",
            code="origin_mismatch",
        )
    return cp


def checkpoint_cosignatures(note: SignedNote, witnesses: Sequence[PublicKey]) -> dict[str, int]:
    """Witness name -> timestamp for each witness in ``witnesses`` that cosigned ``note``.

    Lines by other keys are ignored; a line by a listed witness that does not verify raises
    VerificationError ``bad_cosignature``.  If a witness cosigned twice, the latest time wins.
    This does not check the log's own signature: call :func:`open_checkpoint` for that.
    """
    by_id = {(w.name, w.with_type(KeyType.COSIGNATURE_V1).key_id): w for w in witnesses}
    times: dict[str, int] = {}
    for sig in note.signatures:
        witness = by_id.get((sig.name, sig.key_id))
        if witness is None:
            continue
        timestamp = verify_cosignature(note.text, sig, witness)
        times[witness.name] = max(timestamp, times.get(witness.name, timestamp))
    return times
