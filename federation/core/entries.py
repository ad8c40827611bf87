"""Log entries: the three kinds, their signatures and their one leaf encoding.

Implements spec/entries.md §2 and §4–§5.  An entry is what a member appends to its own
Merkle log: a ``submission`` of one signal with labels, a ``retraction`` (permanent tombstone)
of one of its own earlier submissions, or an ``opinion`` about any member's entry.

Authority comes from the origin's signature alone — relays never re-sign — so the signature
covers everything except itself: ``Ed25519(DOMAIN_ENTRY || JCS(entry))``.  The signed entry is
``{"entry": {...}, "signature": "<base64>"}``; its RFC 8785 canonical bytes are the *leaf bytes*
that the log hashes (``SHA-256(0x00 || leaf)``, RFC 9162 §2.1.1).

One entry must have exactly one leaf encoding, otherwise two nodes could hold different leaves
(and roots) for the same signed entry.  So optional fields that are absent are *omitted* (never
``null``), and :func:`parse_leaf` re-encodes what it parsed and refuses any input that is not
byte-identical to that re-encoding (whitespace, key order, escapes, ``null`` members, unsorted
categories, uppercase hex…).

Relations that need the log — that a retraction's target is a submission, that it is earlier,
that the signer is an active member — are checked by the log and sync layers, not here.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic_core.core_schema import ValidationInfo

from federation.core.canonical import canonical_json
from federation.core.ids import EntryId, HashHex, LogIndex, MemberId, Signature64, UnixSeconds
from federation.core.keys import DOMAIN_ENTRY, PublicKey, SigningKey
from federation.core.labels import CaseRef, Comment, Labels, Note
from federation.core.signals import Signal
from federation.errors import FederationError, VerificationError

MAX_LEAF_BYTES = 8192
"""Upper bound on leaf bytes; the largest valid entry (a 500-character comment) is ~2.5 KiB."""

LEAF_PREFIX = b"\x00"

RetractionReason = Literal["false-positive", "victim-withdrawal", "legal", "duplicate", "error"]
"""Why an origin withdraws one of its submissions (every reason is permanent)."""

Verdict = Literal["true_positive", "false_positive", "disputed_label"]
"""A member's opinion of an entry: its own confirmation, a false positive, or wrong labels."""

_MODEL = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class EntryRef(BaseModel):
    """A pointer to one entry of one origin's log, as retractions and opinions use it.

    The leaf hash pins the exact entry, so a reference stays unambiguous even if a log were
    forked: an opinion about leaf X at index 7 is not an opinion about leaf Y at index 7.
    """

    model_config = _MODEL

    origin: MemberId
    """Member whose log holds the entry."""
    index: LogIndex
    """0-based index of the entry in that log."""
    leaf_hash: HashHex
    """RFC 9162 leaf hash ``SHA-256(0x00 || leaf bytes)`` of the entry, 64 lowercase hex."""


class Submission(BaseModel):
    """A confirmed signal shared with the federation: one hash, its labels, an opaque case ref."""

    model_config = _MODEL

    kind: Literal["submission"] = "submission"
    """Discriminator."""
    origin: MemberId
    """Member that submitted and signed the entry."""
    id: EntryId
    """Submitter-chosen id, unique within the origin (makes submission idempotent)."""
    created: UnixSeconds
    """When the origin created the entry (unix seconds, the origin's clock)."""
    signal: Signal
    """The one hash this entry shares (PDQ, MD5 or SHA-256)."""
    labels: Labels
    """What the content is, how severe, who confirmed it (taxonomy ``hashfed-labels/v1``)."""
    case_ref: CaseRef | None = None
    """Opaque case reference of the origin; omitted from the wire when absent."""


class Retraction(BaseModel):
    """A permanent tombstone by an origin for one of its own earlier submissions."""

    model_config = _MODEL

    kind: Literal["retraction"] = "retraction"
    """Discriminator."""
    origin: MemberId
    """Member that retracts; must be the origin of the target."""
    id: EntryId
    """Submitter-chosen id, unique within the origin."""
    created: UnixSeconds
    """When the origin created the retraction (unix seconds)."""
    target: EntryRef
    """The submission being retracted (in the origin's own log)."""
    reason: RetractionReason
    """Why: ``false-positive``, ``victim-withdrawal``, ``legal``, ``duplicate`` or ``error``."""
    note: Note | None = None
    """Short free text (≤ 280 chars, no links or addresses); omitted when absent."""

    @field_validator("target")
    @classmethod
    def _own_entry(cls, target: EntryRef, info: ValidationInfo) -> EntryRef:
        origin = info.data.get("origin")
        if origin is not None and target.origin != origin:
            raise ValueError(
                f"a retraction can only target its own origin's entries ({origin!r}), "
                f"not {target.origin!r}"
            )
        return target


class Opinion(BaseModel):
    """A member's verdict on any member's entry; aggregated into match status."""

    model_config = _MODEL

    kind: Literal["opinion"] = "opinion"
    """Discriminator."""
    origin: MemberId
    """Member giving the opinion (it travels in that member's own log)."""
    id: EntryId
    """Submitter-chosen id, unique within the origin."""
    created: UnixSeconds
    """When the opinion was created (unix seconds)."""
    target: EntryRef
    """The entry the opinion is about (any origin)."""
    verdict: Verdict
    """``true_positive``, ``false_positive`` or ``disputed_label``."""
    comment: Comment | None = None
    """Free text (≤ 500 chars, no links or addresses); omitted when absent."""


Entry = Annotated[Submission | Retraction | Opinion, Field(discriminator="kind")]
"""Any entry kind, discriminated by ``kind``."""

entry_adapter: TypeAdapter[Submission | Retraction | Opinion] = TypeAdapter(Entry)
"""Validates a bare (unsigned) entry from JSON-like data, e.g. a submission request body."""


class SignedEntry(BaseModel):
    """An entry with its origin's signature: the unit that logs store and peers replicate.

    Nested rather than flat so the signed payload is exactly the ``entry`` member, with no
    field-stripping rule for implementations to get wrong.
    """

    model_config = _MODEL

    entry: Entry
    """The entry as signed."""
    signature: Signature64
    """Ed25519 signature by ``entry.origin`` over ``DOMAIN_ENTRY || JCS(entry)``, base64."""


def entry_json(entry: Submission | Retraction | Opinion) -> dict[str, Any]:
    """The JSON value of an entry (absent optional fields omitted, see module docstring)."""
    return entry.model_dump(mode="json", exclude_none=True)


def signing_payload(entry: Submission | Retraction | Opinion) -> bytes:
    """The canonical bytes of the unsigned entry (the message after the domain prefix)."""
    return canonical_json(entry_json(entry))


def sign_entry(entry: Submission | Retraction | Opinion, key: SigningKey) -> SignedEntry:
    """Sign ``entry`` with the origin's key.  Deterministic (Ed25519), so KATs are stable."""
    return sign_entry_leaf(entry, key)[0]


def sign_entry_leaf(
    entry: Submission | Retraction | Opinion, key: SigningKey
) -> tuple[SignedEntry, bytes]:
    """:func:`sign_entry` and the leaf bytes of the result, from ONE encoding of the entry.

    The log writer needs both for every entry it appends; encoding the entry a second time
    for :func:`leaf_bytes` cost as much as the signature.
    """
    payload = signing_payload(entry)
    signature = base64.b64encode(key.sign_domain(DOMAIN_ENTRY, payload)).decode("ascii")
    return SignedEntry(entry=entry, signature=signature), _assemble_leaf(payload, signature)


def verify_entry(signed: SignedEntry, key: PublicKey) -> None:
    """Raise ``VerificationError(code="bad_entry_signature")`` unless ``key`` signed the entry.

    Checks the signature only: which key belongs to ``entry.origin`` and whether that member
    may submit is the caller's business (manifest lookup).
    """
    _verify_payload(signed, signing_payload(signed.entry), key)


def _verify_payload(signed: SignedEntry, payload: bytes, key: PublicKey) -> None:
    try:
        key.verify_domain(DOMAIN_ENTRY, payload, base64.b64decode(signed.signature))
    except VerificationError:
        raise VerificationError(
            f"entry {signed.entry.id!r} of {signed.entry.origin!r} is not signed by key "
            f"{key.name!r}",
            code="bad_entry_signature",
        ) from None


def _assemble_leaf(payload: bytes, signature: str) -> bytes:
    # JCS of {"entry": E, "signature": S}: "entry" sorts before "signature", E's canonical
    # bytes are the signing payload, and base64 needs no escaping, so the leaf is a
    # concatenation; this spares a second encoding of the entry on every sign and verify.
    return b'{"entry":' + payload + b',"signature":"' + signature.encode("ascii") + b'"}'


def leaf_bytes(signed: SignedEntry) -> bytes:
    """The RFC 8785 canonical bytes of the whole signed entry: what the log hashes and serves."""
    return _assemble_leaf(signing_payload(signed.entry), signed.signature)


def _loc(exc: ValidationError) -> str | None:
    errors = exc.errors()
    if not errors:
        return None
    return ".".join(str(part) for part in errors[0]["loc"]) or None


def _parse_leaf(data: bytes) -> tuple[SignedEntry, bytes]:
    if len(data) > MAX_LEAF_BYTES:
        raise VerificationError(
            f"leaf is {len(data)} bytes, more than {MAX_LEAF_BYTES}", code="malformed_leaf"
        )
    # pydantic's own JSON parser validates straight from the bytes; it is laxer than
    # parse_json (duplicate keys, floats, escapes), but nothing it lets through survives the
    # byte comparison below: the leaf must BE our canonical encoding of what was parsed.
    try:
        signed = SignedEntry.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise VerificationError(
                f"leaf is not valid JSON: {first['msg']}", code="malformed_leaf"
            ) from None
        field = _loc(exc)
        raise VerificationError(
            f"leaf is not a valid signed entry: {field or '$'}: {first['msg']}",
            code="malformed_leaf",
            field=field,
        ) from None
    try:
        payload = signing_payload(signed.entry)
    except FederationError as exc:  # e.g. an integer outside the JCS range
        raise VerificationError(
            f"leaf cannot be encoded: {exc.message}", code="malformed_leaf"
        ) from None
    if _assemble_leaf(payload, signed.signature) != data:
        raise VerificationError(
            "leaf bytes are not the canonical (RFC 8785) encoding of the entry",
            code="malformed_leaf",
        )
    return signed, payload


def parse_leaf(data: bytes) -> SignedEntry:
    """Parse leaf bytes strictly; raise ``VerificationError(code="malformed_leaf")`` otherwise.

    Rejects anything that is not valid, known, and byte-for-byte the canonical encoding of the
    entry it parses to, so a leaf hash identifies one entry and one entry has one leaf hash.
    """
    return _parse_leaf(data)[0]


def verify_leaf(data: bytes, key: PublicKey) -> SignedEntry:
    """:func:`parse_leaf` then :func:`verify_entry` with one encoding of the entry instead of
    two — the hot path of replication, which receives leaf bytes from peers."""
    signed, payload = _parse_leaf(data)
    _verify_payload(signed, payload, key)
    return signed


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash of leaf bytes: ``SHA-256(0x00 || data)``."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def entry_leaf_hash(signed: SignedEntry) -> bytes:
    """The 32-byte RFC 9162 leaf hash of a signed entry."""
    return leaf_hash(leaf_bytes(signed))


def entry_ref(signed: SignedEntry, index: int) -> EntryRef:
    """The reference a retraction or opinion uses to point at ``signed`` stored at ``index``."""
    return EntryRef(
        origin=signed.entry.origin, index=index, leaf_hash=entry_leaf_hash(signed).hex()
    )
