"""The membership manifest: who is in the federation, their keys and endpoints, and policy.

Implements spec/entries.md §6.  A manifest is a JSON document signed by k-of-n steward
keys over ``DOMAIN_MANIFEST || JCS(manifest)``.  Trust is a chain: a genesis manifest is pinned
out of band (its hash, see :func:`manifest_hash`) and verified against its own stewards; every
later version is accepted only if a quorum of the stewards of the version *before it* signed
it (:func:`accept_update`), so stolen minority keys or a newly added steward alone can never
rewrite membership.

The models also enforce the internal consistency that every node relies on: member ids, log
origins and transport key ids are unique; a member's log vkey is a type-0x01 note key named
after its log origin; witnesses carry a type-0x04 cosignature key.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
)
from pydantic_core.core_schema import ValidationInfo

from federation.core.canonical import canonical_json, parse_json
from federation.core.ids import (
    Count,
    MemberId,
    PublicKey32,
    Signature64,
    UnixSeconds,
    check_member_id,
)
from federation.core.keys import DOMAIN_MANIFEST, KeyType, PublicKey, SigningKey
from federation.core.signals import PDQ_DEFAULT_THRESHOLD, PDQ_MAX_DISTANCE, PDQ_MIN_QUALITY_DEFAULT
from federation.errors import FederationError, InputError, VerificationError

_MODEL = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
_KEY_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_HEX8_RE = re.compile(r"[0-9a-f]{8}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class Role(StrEnum):
    """What a member may do.  Roles are checked per request by the server."""

    SUBMITTER = "submitter"
    CONSUMER = "consumer"
    AUDITOR = "auditor"
    WITNESS = "witness"


def _parse_vkey(value: str, want: KeyType, what: str) -> PublicKey:
    try:
        key = PublicKey.parse(value)
    except FederationError as exc:
        raise ValueError(f"{what}: {exc.message}") from None
    if key.key_type != want:
        raise ValueError(f"{what} must be of type 0x{want:02x}, got 0x{key.key_type:02x}")
    return key


def _check_transport_key_id(value: str) -> str:
    if not _KEY_ID_RE.fullmatch(value):
        raise ValueError("key id must be 1-128 characters of A-Z, a-z, 0-9, '.', '_', ':', '-'")
    return value


def _check_display_name(value: str) -> str:
    if not 1 <= len(value) <= 128 or _CONTROL_RE.search(value):
        raise ValueError("name must be 1-128 characters without control characters")
    return value


def _check_endpoint(value: str) -> str:
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.query
        or parts.fragment
        or len(value) > 2048
        or any(c.isspace() for c in value)
    ):
        raise ValueError(
            "endpoint must be an http(s) URL with a host and no credentials, query or fragment"
        )
    return value


def _check_log_origin(value: str) -> str:
    if (
        not 1 <= len(value) <= 255
        or "+" in value
        or any(c.isspace() for c in value)
        or not value.isprintable()
    ):
        raise ValueError("log origin must be 1-255 printable characters without spaces or '+'")
    return value


class TransportKey(BaseModel):
    """A key a member signs HTTP requests with (RFC 9421), valid during a window."""

    model_config = _MODEL

    key_id: Annotated[str, Strict(), AfterValidator(_check_transport_key_id)]
    """Stable name used as the RFC 9421 ``keyid``; unique across the whole manifest."""
    public_key: PublicKey32
    """Ed25519 public key, standard base64 of 32 bytes."""
    not_before: UnixSeconds
    """First second the key is valid (inclusive)."""
    not_after: UnixSeconds | None = None
    """First second the key is no longer valid (exclusive); absent = until rotated out."""

    @field_validator("not_after")
    @classmethod
    def _window(cls, value: int | None, info: ValidationInfo) -> int | None:
        start = info.data.get("not_before")
        if value is not None and start is not None and value <= start:
            raise ValueError("not_after must be later than not_before")
        return value

    def valid_at(self, at: int) -> bool:
        """Whether the key may be used at unix time ``at``."""
        return self.not_before <= at and (self.not_after is None or at < self.not_after)

    def public(self) -> PublicKey:
        """The key as a verifier, named after its key id."""
        return PublicKey.from_raw(self.key_id, KeyType.ED25519, base64.b64decode(self.public_key))


def suspension_refusal(
    suspended_at: int | None, suspended_size: int | None, index: int, created: int
) -> str | None:
    """Why a suspension refuses the entry at log ``index`` created at ``created``, or None.

    The one rule replication, the auditor and the spec share (spec/entries.md §6): an entry is
    refused if its index is at or beyond ``suspended_size`` (whatever its ``created``), or if
    it was created at or after ``suspended_at``.  Both apply when both are set.  The size rule
    comes first because it is the one a thief holding the log key cannot get round.
    """
    if suspended_size is not None and index >= suspended_size:
        return f"index {index} is at or beyond the suspension at log size {suspended_size}"
    if suspended_at is not None and created >= suspended_at:
        return f"created at {created}, at or after the suspension at {suspended_at}"
    return None


def _check_roles(value: tuple[Role, ...]) -> tuple[Role, ...]:
    if not value:
        raise ValueError("at least one role is required")
    if len(set(value)) != len(value):
        raise ValueError("roles must not repeat")
    return tuple(sorted(value))


class Member(BaseModel):
    """One federation member and everything a peer needs to talk to it and verify it."""

    model_config = _MODEL

    id: MemberId
    """Member id, the ``origin`` of its entries."""
    name: Annotated[str, Strict(), AfterValidator(_check_display_name)]
    """Human-readable name (organisation)."""
    roles: Annotated[tuple[Role, ...], AfterValidator(_check_roles)]
    """Non-empty set of roles, stored sorted."""
    endpoint: Annotated[str, Strict(), AfterValidator(_check_endpoint)]
    """Base http(s) URL of the member's node."""
    log_origin: Annotated[str, Strict(), AfterValidator(_check_log_origin)]
    """Origin line of the member's checkpoints (C2SP tlog-checkpoint), e.g. ``nca.example/hf``."""
    log_vkey: str
    """C2SP verifier key (type 0x01) of the member's checkpoints; its name is ``log_origin``."""
    witness_vkey: str | None = Field(default=None, validate_default=True)
    """C2SP cosignature/v1 verifier key (type 0x04); required for the ``witness`` role."""
    transport_keys: tuple[TransportKey, ...]
    """Keys the member signs requests with (several during a rotation)."""
    status: Literal["active", "suspended"] = "active"
    """``suspended`` members get 403 and their new entries are refused."""
    suspended_at: UnixSeconds | None = Field(default=None, validate_default=True)
    """When the suspension took effect: entries created at or after it are refused.

    Only with ``status`` ``suspended``, which needs ``suspended_at``, ``suspended_size`` or both.
    """
    suspended_size: Count | None = Field(default=None, validate_default=True)
    """Size of the member's log the stewards vouch for: entries at index ≥ it are refused.

    Whatever their ``created`` (a stolen log key can back-date that, not a log position).
    Only with ``status`` ``suspended``; a later version may lower it, never raise or drop it.
    """

    @field_validator("log_vkey")
    @classmethod
    def _log_vkey(cls, value: str, info: ValidationInfo) -> str:
        key = _parse_vkey(value, KeyType.ED25519, "log_vkey")
        origin = info.data.get("log_origin")
        if origin is not None and key.name != origin:
            raise ValueError(f"log_vkey name {key.name!r} must equal log_origin {origin!r}")
        return value

    @field_validator("witness_vkey")
    @classmethod
    def _witness_vkey(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            _parse_vkey(value, KeyType.COSIGNATURE_V1, "witness_vkey")
        elif Role.WITNESS in info.data.get("roles", ()):
            raise ValueError("a member with the witness role needs a witness_vkey")
        return value

    @field_validator("suspended_at")
    @classmethod
    def _suspended_at(cls, value: int | None, info: ValidationInfo) -> int | None:
        if info.data.get("status") == "active" and value is not None:
            raise ValueError("an active member must not have suspended_at")
        return value

    @field_validator("suspended_size")
    @classmethod
    def _suspended_size(cls, value: int | None, info: ValidationInfo) -> int | None:
        status = info.data.get("status")
        if status == "active" and value is not None:
            raise ValueError("an active member must not have suspended_size")
        # A suspended_at that failed its own validation is absent here and reported itself.
        if status == "suspended" and value is None and info.data.get("suspended_at", 0) is None:
            raise ValueError("a suspended member needs suspended_at, suspended_size or both")
        return value

    def active_at(self, at: int) -> bool:
        """Whether the member may act at unix time ``at``: sign requests, witness, be witnessed.

        A suspension by time takes effect at ``suspended_at``; one by log size alone at once.
        """
        return self.status == "active" or (self.suspended_at is not None and at < self.suspended_at)

    def entry_refusal(self, index: int, created: int) -> str | None:
        """Why the suspension refuses this member's entry at log ``index``, or None."""
        return suspension_refusal(self.suspended_at, self.suspended_size, index, created)

    def log_key(self) -> PublicKey:
        """The member's checkpoint verifier key."""
        return PublicKey.parse(self.log_vkey)

    def witness_key(self) -> PublicKey | None:
        """The member's cosignature verifier key, if it is a witness."""
        return PublicKey.parse(self.witness_vkey) if self.witness_vkey else None


class Policy(BaseModel):
    """Federation-wide policy every node applies."""

    model_config = _MODEL

    pdq_threshold: Annotated[int, Strict(), Field(ge=0, le=PDQ_MAX_DISTANCE)] = (
        PDQ_DEFAULT_THRESHOLD
    )
    """Default PDQ match radius (Hamming distance, 0–63)."""
    min_pdq_quality: Annotated[int, Strict(), Field(ge=0, le=100)] = PDQ_MIN_QUALITY_DEFAULT
    """PDQ submissions below this quality are refused."""
    witness_quorum: Count = 0
    """Cosignatures from distinct witnesses needed before a checkpoint's entries apply."""
    quarantine_false_positives: Count = 0
    """Independent ``false_positive`` opinions that quarantine a signal; 0 disables it."""


def _check_federation(value: str) -> str:
    try:
        return check_member_id(value)
    except ValueError:
        raise ValueError(
            "federation name must be 1-64 characters of lowercase a-z, 0-9, '.', '-'"
        ) from None


def _check_stewards(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise ValueError("at least one steward key is required")
    ids = [_parse_vkey(v, KeyType.ED25519, f"steward {i}").key_id for i, v in enumerate(value)]
    if len(set(ids)) != len(ids):
        raise ValueError("steward key ids must be unique")
    return value


class Manifest(BaseModel):
    """One version of the federation's membership and policy."""

    model_config = _MODEL

    federation: Annotated[str, Strict(), AfterValidator(_check_federation)]
    """Federation name; an update must keep it."""
    version: Annotated[int, Strict(), Field(ge=1, le=2**53 - 1)]
    """Monotonic version; an update must be strictly greater."""
    issued_at: UnixSeconds
    """When the stewards issued this version."""
    members: tuple[Member, ...]
    """All members, active and suspended; ids, log origins and transport key ids are unique."""
    policy: Policy = Policy()
    """Federation policy."""
    stewards: Annotated[tuple[str, ...], AfterValidator(_check_stewards)]
    """C2SP verifier keys (type 0x01) of the stewards who sign the *next* version."""
    steward_quorum: Annotated[int, Strict(), Field(ge=1)]
    """How many distinct stewards must sign the next version (1..len(stewards))."""

    @field_validator("members")
    @classmethod
    def _unique(cls, members: tuple[Member, ...]) -> tuple[Member, ...]:
        for what, values in (
            ("member id", [m.id for m in members]),
            ("log origin", [m.log_origin for m in members]),
            ("transport key id", [k.key_id for m in members for k in m.transport_keys]),
        ):
            seen: set[str] = set()
            for value in values:
                if value in seen:
                    raise ValueError(f"{what} {value!r} appears more than once")
                seen.add(value)
        return members

    @field_validator("policy")
    @classmethod
    def _witnesses_exist(cls, policy: Policy, info: ValidationInfo) -> Policy:
        witnesses = sum(Role.WITNESS in m.roles for m in info.data.get("members", ()))
        if "members" in info.data and policy.witness_quorum > witnesses:
            raise ValueError(
                f"witness_quorum {policy.witness_quorum} exceeds the {witnesses} witness members"
            )
        return policy

    @field_validator("steward_quorum")
    @classmethod
    def _quorum(cls, value: int, info: ValidationInfo) -> int:
        stewards = info.data.get("stewards")
        if stewards is not None and value > len(stewards):
            raise ValueError(f"steward_quorum {value} exceeds the {len(stewards)} stewards")
        return value

    def member(self, member_id: str) -> Member | None:
        """The member with this id, or None.

        A linear scan on purpose: federations have tens of members, and a cached index would
        go stale under ``model_copy(update=...)``.
        """
        return next((m for m in self.members if m.id == member_id), None)

    def member_by_origin(self, log_origin: str) -> Member | None:
        """The member whose log has this checkpoint origin, or None."""
        return next((m for m in self.members if m.log_origin == log_origin), None)

    def transport_key(self, key_id: str, at: int) -> tuple[Member, PublicKey] | None:
        """The member and request-signing key for ``key_id`` if it is valid at ``at``.

        Status is not checked here (an authenticated-but-suspended member gets 403, an unknown
        key 401); use :meth:`is_active` for that.
        """
        for member in self.members:
            for key in member.transport_keys:
                if key.key_id == key_id:
                    return (member, key.public()) if key.valid_at(at) else None
        return None

    def is_active(self, member_id: str, at: int) -> bool:
        """Whether the member exists and may act at unix time ``at`` (:meth:`Member.active_at`).

        For requests and witnessing, at the verifier's clock.  Entries are judged by
        :meth:`Member.entry_refusal` instead: by their log index and their ``created``.
        """
        member = self.member(member_id)
        return member is not None and member.active_at(at)

    def steward_keys(self) -> dict[str, PublicKey]:
        """Steward verifier keys by their hex8 C2SP key id."""
        keys = (PublicKey.parse(v) for v in self.stewards)
        return {k.key_id.hex(): k for k in keys}


class ManifestSignature(BaseModel):
    """One steward's signature over a manifest."""

    model_config = _MODEL

    key_id: Annotated[str, Strict(), Field(pattern=_HEX8_RE.pattern)]
    """C2SP key id of the steward's verifier key, 8 lowercase hex."""
    signature: Signature64
    """Ed25519 over ``DOMAIN_MANIFEST || JCS(manifest)``, base64."""


class SignedManifest(BaseModel):
    """A manifest with steward signatures (in key-id order; duplicates count once)."""

    model_config = _MODEL

    manifest: Manifest
    """The manifest as signed."""
    signatures: tuple[ManifestSignature, ...]
    """Steward signatures; ones by keys that are not stewards are ignored."""


def manifest_json(manifest: Manifest) -> dict[str, Any]:
    """The JSON value of a manifest (absent optional fields omitted)."""
    return manifest.model_dump(mode="json", exclude_none=True)


def manifest_payload(manifest: Manifest) -> bytes:
    """The canonical bytes stewards sign (after the domain prefix)."""
    return canonical_json(manifest_json(manifest))


def manifest_hash(manifest: Manifest) -> str:
    """SHA-256 hex of the canonical manifest: what operators pin for a genesis manifest."""
    return hashlib.sha256(manifest_payload(manifest)).hexdigest()


def signed_manifest_json(signed: SignedManifest) -> dict[str, Any]:
    """The JSON value of a signed manifest, as written to disk and served."""
    return signed.model_dump(mode="json", exclude_none=True)


def _sorted(signatures: Sequence[ManifestSignature]) -> tuple[ManifestSignature, ...]:
    unique = {s.key_id: s for s in signatures}
    return tuple(unique[k] for k in sorted(unique))


def _signature(manifest: Manifest, key: SigningKey) -> ManifestSignature:
    raw = key.sign_domain(DOMAIN_MANIFEST, manifest_payload(manifest))
    return ManifestSignature(
        key_id=key.public.key_id.hex(), signature=base64.b64encode(raw).decode()
    )


def sign_manifest(manifest: Manifest, keys: Sequence[SigningKey]) -> SignedManifest:
    """Sign ``manifest`` with each of ``keys`` (the stewards of the previous version)."""
    return SignedManifest(
        manifest=manifest, signatures=_sorted([_signature(manifest, k) for k in keys])
    )


def add_manifest_signature(signed: SignedManifest, key: SigningKey) -> SignedManifest:
    """``signed`` with one more steward signature (stewards sign one after another)."""
    new = _signature(signed.manifest, key)
    return SignedManifest(manifest=signed.manifest, signatures=_sorted([*signed.signatures, new]))


def verify_manifest(signed: SignedManifest, trusted: Manifest | None = None) -> None:
    """Raise unless a quorum of the stewards of ``trusted`` signed ``signed.manifest``.

    Without ``trusted`` the manifest is checked against its own stewards, which proves nothing
    by itself: use that only for a genesis manifest whose hash was pinned out of band.  Each
    steward counts once however often it appears; signatures by other keys are ignored; a
    signature that claims a steward's key id but does not verify is an error.
    """
    authority = trusted if trusted is not None else signed.manifest
    stewards = authority.steward_keys()
    payload = manifest_payload(signed.manifest)
    valid: set[str] = set()
    for sig in signed.signatures:
        key = stewards.get(sig.key_id)
        if key is None:
            continue
        try:
            key.verify_domain(DOMAIN_MANIFEST, payload, base64.b64decode(sig.signature))
        except VerificationError:
            raise VerificationError(
                f"signature by steward {sig.key_id} does not verify",
                code="manifest_bad_signature",
            ) from None
        valid.add(sig.key_id)
    if len(valid) < authority.steward_quorum:
        raise VerificationError(
            f"manifest has {len(valid)} valid steward signatures, "
            f"quorum is {authority.steward_quorum}",
            code="manifest_quorum_not_met",
        )


def accept_update(previous: SignedManifest, new: SignedManifest) -> None:
    """Raise unless ``new`` may replace ``previous`` (which the caller already trusts).

    Same federation, strictly higher version, not issued earlier, and signed by a quorum of
    the *previous* stewards — never by the new ones alone, or whoever wrote the new steward
    list could sign it.
    """
    old, cur = previous.manifest, new.manifest
    if cur.federation != old.federation:
        raise VerificationError(
            f"manifest is for federation {cur.federation!r}, not {old.federation!r}",
            code="manifest_federation_mismatch",
        )
    if cur.version <= old.version:
        raise VerificationError(
            f"manifest version {cur.version} is not newer than {old.version}",
            code="manifest_version_not_newer",
        )
    if cur.issued_at < old.issued_at:
        raise VerificationError(
            "manifest is issued before the version it replaces",
            code="manifest_issued_before_previous",
        )
    _check_log_identities(old, cur)
    _check_suspended_sizes(old, cur)
    verify_manifest(new, trusted=old)


def _check_log_identities(old: Manifest, cur: Manifest) -> None:
    """A member's log origin and log key are fixed for the life of its log.

    Every verifier checks a log's whole history against one ``log_vkey``: changing it (or the
    origin line the checkpoints carry) would make every earlier entry fail verification, or
    let whoever controls the new key rewrite the member's history.  A member whose log key is
    compromised is suspended, and a new member id with a new log is admitted instead.
    """
    for member in cur.members:
        before = old.member(member.id)
        if before is None:
            continue
        if (member.log_origin, member.log_vkey) != (before.log_origin, before.log_vkey):
            raise VerificationError(
                f"manifest changes the log origin or log key of existing member {member.id!r};"
                " a log's identity is fixed (suspend the member and admit a new one instead)",
                code="manifest_log_identity_changed",
            )


def _check_suspended_sizes(old: Manifest, cur: Manifest) -> None:
    """A ``suspended_size`` may be lowered by a later version, never raised or dropped.

    Raising it, dropping it (or the suspension), or removing the member would let entries a
    thief appended beyond the vouched size be applied after all — by nodes that have not yet
    pulled them, or by one that re-adds the member later.  Lowering it only refuses more.
    """
    for before in old.members:
        if before.suspended_size is None:
            continue
        after = cur.member(before.id)
        if after is None or after.suspended_size is None:
            what = "removes member" if after is None else "drops the suspended_size of member"
        elif after.suspended_size > before.suspended_size:
            what = f"raises to {after.suspended_size} the suspended_size of member"
        else:
            continue
        raise VerificationError(
            f"manifest {what} {before.id!r} (suspended at log size {before.suspended_size});"
            " a suspension by log size may only be lowered",
            code="manifest_suspension_weakened",
        )


def parse_signed_manifest(data: bytes) -> SignedManifest:
    """Parse a signed manifest file strictly; ``InputError(code="invalid_manifest")`` names
    the field at fault.  Formatting is free (manifests are edited by people); the signatures
    cover the canonical form."""
    return validate_manifest_value(SignedManifest, parse_json(data))


M = TypeVar("M", Manifest, SignedManifest)


def validate_manifest_value(model: type[M], value: object) -> M:
    """Validate a parsed manifest document; ``InputError(code="invalid_manifest")`` names the
    field at fault, for files written by people and for the CLI's edits alike."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise InputError(
            f"invalid manifest: {field or '$'}: {first['msg']}",
            code="invalid_manifest",
            field=field,
        ) from None
