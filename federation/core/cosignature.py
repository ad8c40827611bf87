"""Witness cosignatures of checkpoints: C2SP tlog-cosignature, Ed25519 ``cosignature/v1``.

A cosignature is a note signature by a witness key of type 0x04.  Its signature bytes are a
``timestamped_signature``: the u64 POSIX timestamp (big-endian) followed by the 64-byte
Ed25519 signature of::

    cosignature/v1\\n
    time <timestamp in decimal, no leading zeros>\\n
    <the whole checkpoint note text, final newline included>

The header line is the domain separation: the same message can never be a valid log signature
over a checkpoint (whose second line must be a decimal size, not ``time …``).  The message does
not name the witness, so one witness key must never serve two witnesses (spec §Ed25519).
"""

from __future__ import annotations

from federation.core.keys import ED25519_SIGNATURE_LEN, KeyType, PublicKey, SigningKey
from federation.core.note import NoteSignature
from federation.errors import InputError, VerificationError

COSIGNATURE_HEADER = b"cosignature/v1\n"
TIMESTAMP_LEN = 8
COSIGNATURE_LEN = TIMESTAMP_LEN + ED25519_SIGNATURE_LEN
MAX_TIMESTAMP = 2**63 - 1  # spec: the timestamp MUST NOT exceed 2^63 - 1


def cosignature_message(checkpoint_body: str, timestamp: int) -> bytes:
    """The exact bytes a witness signs for ``checkpoint_body`` at ``timestamp``."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise InputError(
            f"cosignature timestamp {timestamp} outside 0..2^63-1", code="invalid_timestamp"
        )
    if not checkpoint_body.endswith("\n"):
        raise InputError(
            "checkpoint body must end with a newline", code="invalid_checkpoint", field="body"
        )
    return COSIGNATURE_HEADER + b"time %d\n" % timestamp + checkpoint_body.encode()


def cosign(checkpoint_body: str, key: SigningKey, timestamp: int) -> NoteSignature:
    """Cosign ``checkpoint_body`` at ``timestamp`` (POSIX seconds, from an injected clock).

    An Ed25519 key of type 0x01 is presented as type 0x04, so the key ID in the signature line
    is always the cosignature key ID ``SHA-256(name || 0x0A || 0x04 || pub)[:4]``.
    """
    witness = key.with_type(KeyType.COSIGNATURE_V1)
    signature = witness.sign(cosignature_message(checkpoint_body, timestamp))
    return NoteSignature(
        witness.name, witness.public.key_id, timestamp.to_bytes(TIMESTAMP_LEN, "big") + signature
    )


def verify_cosignature(checkpoint_body: str, sig: NoteSignature, key: PublicKey) -> int:
    """Verify one cosignature line by witness ``key``; return its timestamp.

    Raises VerificationError ``bad_cosignature`` when the line is not this witness's or the
    signature does not verify.  A type 0x01 key is treated as the same key with type 0x04.
    """
    witness = key.with_type(KeyType.COSIGNATURE_V1)
    if sig.name != witness.name or sig.key_id != witness.key_id:
        raise VerificationError(
            f"cosignature by {sig.name}+{sig.key_id.hex()} is not by witness"
            f" {witness.name}+{witness.key_id.hex()}",
            code="bad_cosignature",
        )
    if len(sig.signature) != COSIGNATURE_LEN:
        raise VerificationError(
            f"cosignature by {sig.name} must be {COSIGNATURE_LEN} bytes", code="bad_cosignature"
        )
    timestamp = int.from_bytes(sig.signature[:TIMESTAMP_LEN], "big")
    if timestamp > MAX_TIMESTAMP:
        raise VerificationError(
            f"cosignature by {sig.name} has a timestamp above 2^63-1", code="bad_cosignature"
        )
    try:
        message = cosignature_message(checkpoint_body, timestamp)
    except InputError as exc:
        raise VerificationError(exc.message, code="bad_cosignature") from None
    try:
        witness.verify(message, sig.signature[TIMESTAMP_LEN:])
    except VerificationError:
        raise VerificationError(
            f"cosignature by {sig.name} does not verify", code="bad_cosignature"
        ) from None
    return timestamp
