"""Signal types: the hashes a member shares (PDQ, MD5, SHA-256), never the image itself.

One validating constructor per kind, so that everything past the edge holds normalised values:
PDQ as 64 lowercase hex characters (256 bits, the reference C++ output format) with a quality
0–100, MD5 as 32 and SHA-256 as 64 lowercase hex characters.  Hamming distance is the PDQ
match metric (ThreatExchange ``pdq/``; distance ≤ 31 is a match by default).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from federation.errors import InputError

PDQ_BITS = 256
PDQ_DEFAULT_THRESHOLD = 31
PDQ_MAX_DISTANCE = 63
PDQ_MIN_QUALITY_DEFAULT = 50

DIHEDRAL_TRANSFORMS: tuple[str, ...] = (
    "original",
    "rot90",
    "rot180",
    "rot270",
    "flipx",
    "flipy",
    "flip_plus1",
    "flip_minus1",
)
"""The 8 rotations/flips a dihedral PDQ query tries, in ``pdqhash.compute_dihedral`` order
(checked against the reference ``dih/`` images); match results name them this way."""

_HEX = {"pdq": 64, "md5": 32, "sha256": 64}
_HEX_RE = re.compile(r"[0-9a-fA-F]*")


class SignalKind(StrEnum):
    """The kinds of hash an entry can carry."""

    PDQ = "pdq"
    MD5 = "md5"
    SHA256 = "sha256"


def normalise_hex(kind: str, value: str, *, field: str = "value") -> str:
    """Return ``value`` as lowercase hex of the right length for ``kind``, or raise InputError.

    The error names the field and says exactly what is wrong (length, characters or kind), so a
    submitter can fix the input without guessing.
    """
    if kind not in _HEX:
        raise InputError(
            f"unknown signal kind {kind!r}; expected one of pdq, md5, sha256",
            code="invalid_signal_kind",
            field="kind",
        )
    if not isinstance(value, str):
        raise InputError(f"{kind} hash must be a string", code="invalid_hash", field=field)
    want = _HEX[kind]
    if len(value) != want:
        raise InputError(
            f"{kind} hash must be {want} hex characters, got {len(value)}",
            code="invalid_hash",
            field=field,
        )
    if not _HEX_RE.fullmatch(value):
        raise InputError(
            f"{kind} hash must contain only hex characters 0-9a-f", code="invalid_hash", field=field
        )
    return value.lower()


def hamming(a: str | bytes, b: str | bytes) -> int:
    """Hamming distance between two PDQ hashes given as hex strings or 32 raw bytes."""
    ab = bytes.fromhex(a) if isinstance(a, str) else a
    bb = bytes.fromhex(b) if isinstance(b, str) else b
    if len(ab) != len(bb):
        raise InputError("hashes of different lengths cannot be compared", code="invalid_hash")
    return (int.from_bytes(ab, "big") ^ int.from_bytes(bb, "big")).bit_count()


def _validator(kind: str) -> AfterValidator:
    """A pydantic validator that reports through pydantic (ValueError), so the error keeps the
    field path (e.g. ``signals.3.value``) that the server puts in its error body."""

    def check(value: str) -> str:
        try:
            return normalise_hex(kind, value)
        except InputError as exc:
            raise ValueError(exc.message) from None

    return AfterValidator(check)


PdqHex = Annotated[str, _validator("pdq")]
Md5Hex = Annotated[str, _validator("md5")]
Sha256Hex = Annotated[str, _validator("sha256")]


class PdqSignal(BaseModel):
    """A PDQ perceptual hash with the quality the hasher reported."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    kind: Literal["pdq"] = "pdq"
    """Discriminator."""
    value: PdqHex
    """256-bit PDQ hash as 64 lowercase hex characters."""
    quality: int = Field(ge=0, le=100)
    """PDQ quality 0–100; policy rejects submissions below its minimum (50 by default)."""


class Md5Signal(BaseModel):
    """An MD5 of the file bytes (exact match only)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    kind: Literal["md5"] = "md5"
    """Discriminator."""
    value: Md5Hex
    """32 lowercase hex characters."""


class Sha256Signal(BaseModel):
    """A SHA-256 of the file bytes (exact match only)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    kind: Literal["sha256"] = "sha256"
    """Discriminator."""
    value: Sha256Hex
    """64 lowercase hex characters."""


Signal = Annotated[PdqSignal | Md5Signal | Sha256Signal, Field(discriminator="kind")]
