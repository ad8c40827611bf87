"""Identifier and scalar types shared by every wire model (spec/entries.md §1).

Each identifier gets its own annotated type so that a member id can never be passed where an
entry id is expected without a reader noticing, and so that every model validates the same
way.  Validators raise ``ValueError`` (never a FederationError) so pydantic attaches the field
path (``entry.target.origin``) that the server copies into its error body.

Integers are *strict* (``True`` is not ``1``, ``"5"`` is not ``5``) and bounded to the RFC 8785
safe range, because every one of them ends up in canonical JSON that is signed and hashed.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, Strict

from federation.core.canonical import MAX_SAFE_INTEGER

MEMBER_ID_MAX = 64
ENTRY_ID_MAX = 128

_MEMBER_ID_RE = re.compile(r"[a-z0-9][a-z0-9.-]*")
_ENTRY_ID_RE = re.compile(r"[A-Za-z0-9._:-]+")
_LOWER_HEX_RE = re.compile(r"[0-9a-f]*")


def check_member_id(value: str) -> str:
    """Validate a member id: 1–64 chars, ``[a-z0-9][a-z0-9.-]*`` (DNS-label-like, lowercase)."""
    if not 1 <= len(value) <= MEMBER_ID_MAX:
        raise ValueError(f"member id must be 1-{MEMBER_ID_MAX} characters, got {len(value)}")
    if not _MEMBER_ID_RE.fullmatch(value):
        raise ValueError(
            "member id must start with a-z or 0-9 and contain only lowercase a-z, 0-9, '.', '-'"
        )
    return value


def check_entry_id(value: str) -> str:
    """Validate a client-supplied entry id: 1–128 chars of ``[A-Za-z0-9._:-]``."""
    if not 1 <= len(value) <= ENTRY_ID_MAX:
        raise ValueError(f"entry id must be 1-{ENTRY_ID_MAX} characters, got {len(value)}")
    if not _ENTRY_ID_RE.fullmatch(value):
        raise ValueError("entry id may contain only A-Z, a-z, 0-9, '.', '_', ':', '-'")
    return value


def check_hash_hex(value: str) -> str:
    """Validate a SHA-256 digest as hex; accepts either case and returns lowercase.

    Normalising here (rather than rejecting uppercase) matches the signal types; a leaf that
    carries uppercase is still rejected by the canonical re-encoding check in ``parse_leaf``.
    """
    if len(value) != 64:
        raise ValueError(f"hash must be 64 hex characters, got {len(value)}")
    lowered = value.lower()
    if not _LOWER_HEX_RE.fullmatch(lowered):
        raise ValueError("hash must contain only hex characters 0-9a-f")
    return lowered


def b64_fixed(length: int, what: str) -> AfterValidator:
    """A validator for standard padded base64 that must decode to exactly ``length`` bytes.

    Only the one canonical spelling is accepted (re-encoding must give the same text), so a
    signature or key has exactly one string form on the wire.
    """

    def check(value: str) -> str:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{what} must be standard padded base64") from None
        if len(raw) != length:
            raise ValueError(f"{what} must decode to {length} bytes, got {len(raw)}")
        if base64.b64encode(raw).decode() != value:
            raise ValueError(f"{what} is not in canonical base64 form")
        return value

    return AfterValidator(check)


def _schema(**extra: str | int) -> Any:
    """JSON Schema hints only (validation stays in the validators, which explain errors)."""
    return Field(json_schema_extra=dict(extra))


MemberId = Annotated[
    str,
    Strict(),
    AfterValidator(check_member_id),
    _schema(pattern=r"^[a-z0-9][a-z0-9.-]*$", minLength=1, maxLength=MEMBER_ID_MAX),
]
"""A federation member's id, as listed in the manifest (e.g. ``nca.example``)."""

EntryId = Annotated[
    str,
    Strict(),
    AfterValidator(check_entry_id),
    _schema(pattern=r"^[A-Za-z0-9._:-]+$", minLength=1, maxLength=ENTRY_ID_MAX),
]
"""A submitter-chosen id for an entry, unique per origin (idempotency key)."""

LogIndex = Annotated[int, Strict(), Field(ge=0, le=MAX_SAFE_INTEGER)]
"""A 0-based position in one origin's Merkle log."""

UnixSeconds = Annotated[int, Strict(), Field(ge=0, le=MAX_SAFE_INTEGER)]
"""Seconds since 1970-01-01T00:00:00Z (integers only: hashfed JSON has no floats)."""

Count = Annotated[int, Strict(), Field(ge=0, le=MAX_SAFE_INTEGER)]
"""A non-negative count (quorums, thresholds)."""

HashHex = Annotated[
    str, Strict(), AfterValidator(check_hash_hex), _schema(pattern=r"^[0-9a-fA-F]{64}$")
]
"""A SHA-256 digest as 64 lowercase hex characters (leaf hashes)."""

Signature64 = Annotated[
    str,
    Strict(),
    b64_fixed(64, "signature"),
    _schema(contentEncoding="base64", minLength=88, maxLength=88),
]
"""An Ed25519 signature: standard padded base64 of 64 bytes (88 characters)."""

PublicKey32 = Annotated[
    str,
    Strict(),
    b64_fixed(32, "public key"),
    _schema(contentEncoding="base64", minLength=44, maxLength=44),
]
"""An Ed25519 public key: standard padded base64 of 32 bytes (44 characters)."""
