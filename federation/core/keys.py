"""Ed25519 keys, their C2SP string forms, and domain-separated signatures.

This is the only module that touches signature primitives (pynacl's libsodium bindings), so the
rest of hashfed signs and verifies through three small types and cannot misuse the library
(pynacl and cryptography take their arguments in different orders).

String forms follow C2SP signed-note: a verifier key is ``name+hex8(keyid)+base64(type||pub)``
and a private key ``PRIVATE+KEY+name+hex8(keyid)+base64(type||seed)``, where
``keyid = SHA-256(name || 0x0A || type || pub)[:4]``.  Type 0x01 is a plain Ed25519 note key
(checkpoints); type 0x04 is a tlog-cosignature/v1 key (witnesses).

Every hashfed signature that is not a signed note is *domain separated*: the signed message is
a fixed ASCII prefix ending in a newline followed by the payload, so a signature made for one
purpose (an entry) can never be replayed as another (a manifest, an HTTP request).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from enum import IntEnum

import nacl.exceptions
import nacl.signing

from federation.errors import InputError, VerificationError

ED25519_PUBLIC_LEN = 32
ED25519_SEED_LEN = 32
ED25519_SIGNATURE_LEN = 64

DOMAIN_ENTRY = b"hashfed/v1/entry\n"
DOMAIN_MANIFEST = b"hashfed/v1/manifest\n"
DOMAIN_RECEIPT = b"hashfed/v1/receipt\n"
DOMAIN_ALERT = b"hashfed/v1/alert\n"


class KeyType(IntEnum):
    """The C2SP signature-type byte that prefixes a key in its string form."""

    ED25519 = 0x01
    COSIGNATURE_V1 = 0x04


def key_id(name: str, key_type: KeyType, public: bytes) -> bytes:
    """C2SP signed-note key ID: the first 4 bytes of SHA-256(name || "\\n" || type || pub)."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([key_type]) + public).digest()
    return digest[:4]


def _check_name(name: str) -> None:
    if not name or "+" in name or any(c.isspace() for c in name) or not name.isprintable():
        raise InputError(
            f"key name {name!r} must be non-empty, printable, without spaces or '+'",
            code="invalid_key_name",
            field="name",
        )


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{what} is not valid base64", code="invalid_key") from None


@dataclass(frozen=True)
class PublicKey:
    """A named Ed25519 verifier key of one C2SP type."""

    name: str
    key_type: KeyType
    raw: bytes
    _verifier: nacl.signing.VerifyKey = field(repr=False, compare=False, hash=False)

    @classmethod
    def from_raw(cls, name: str, key_type: KeyType, raw: bytes) -> PublicKey:
        """Build from the 32 public bytes; rejects bad lengths and names."""
        _check_name(name)
        if len(raw) != ED25519_PUBLIC_LEN:
            raise InputError("Ed25519 public key must be 32 bytes", code="invalid_key")
        try:
            verifier = nacl.signing.VerifyKey(raw)
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            raise InputError("not an Ed25519 public key", code="invalid_key") from None
        return cls(name, KeyType(key_type), bytes(raw), verifier)

    @classmethod
    def parse(cls, vkey: str) -> PublicKey:
        """Parse a C2SP verifier key ``name+hex8+base64(type||pub)``, checking its key ID."""
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise InputError(
                "verifier key must look like name+hex8+base64", code="invalid_key", field="vkey"
            )
        name, hexid, b64 = parts
        if len(hexid) != 8 or any(c not in "0123456789abcdef" for c in hexid):
            raise InputError("verifier key ID must be 8 lowercase hex", code="invalid_key")
        blob = _b64decode(b64, "verifier key")
        if len(blob) != 1 + ED25519_PUBLIC_LEN or blob[0] not in tuple(KeyType):
            raise InputError(
                "verifier key must hold a type byte (0x01 or 0x04) and 32 key bytes",
                code="invalid_key",
                field="vkey",
            )
        key = cls.from_raw(name, KeyType(blob[0]), blob[1:])
        if key.key_id.hex() != hexid:
            raise InputError("verifier key ID does not match the key", code="invalid_key")
        return key

    @property
    def key_id(self) -> bytes:
        """The 4-byte C2SP key ID."""
        return key_id(self.name, self.key_type, self.raw)

    def vkey(self) -> str:
        """The C2SP verifier key string."""
        blob = base64.b64encode(bytes([self.key_type]) + self.raw).decode()
        return f"{self.name}+{self.key_id.hex()}+{blob}"

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise VerificationError unless ``signature`` is this key's signature of ``message``."""
        if len(signature) != ED25519_SIGNATURE_LEN:
            raise VerificationError("signature must be 64 bytes", code="bad_signature")
        try:
            self._verifier.verify(message, signature)
        except nacl.exceptions.BadSignatureError:
            raise VerificationError(
                f"signature by {self.name} does not verify", code="bad_signature"
            ) from None

    def verify_domain(self, domain: bytes, payload: bytes, signature: bytes) -> None:
        """Verify a domain-separated signature (see module docstring)."""
        self.verify(domain + payload, signature)

    def with_type(self, key_type: KeyType) -> PublicKey:
        """The same Ed25519 key presented as another C2SP type (e.g. a cosignature key)."""
        return PublicKey(self.name, key_type, self.raw, self._verifier)


@dataclass(frozen=True)
class SigningKey:
    """A named Ed25519 private key; its ``public`` half carries the same name and type."""

    name: str
    key_type: KeyType
    seed: bytes = field(repr=False)
    _signer: nacl.signing.SigningKey = field(repr=False, compare=False, hash=False)

    def __repr__(self) -> str:  # never print key material, even in a traceback
        return f"SigningKey(name={self.name!r}, type={self.key_type.name})"

    @classmethod
    def generate(cls, name: str, key_type: KeyType = KeyType.ED25519) -> SigningKey:
        """A fresh random key."""
        return cls.from_seed(name, bytes(nacl.signing.SigningKey.generate()), key_type)

    @classmethod
    def from_seed(cls, name: str, seed: bytes, key_type: KeyType = KeyType.ED25519) -> SigningKey:
        """Deterministic key from a 32-byte seed (known-answer tests, key files)."""
        _check_name(name)
        if len(seed) != ED25519_SEED_LEN:
            raise InputError("Ed25519 seed must be 32 bytes", code="invalid_key")
        return cls(name, KeyType(key_type), bytes(seed), nacl.signing.SigningKey(seed))

    @classmethod
    def parse(cls, skey: str) -> SigningKey:
        """Parse ``PRIVATE+KEY+name+hex8+base64(type||seed)``, checking the key ID."""
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise InputError(
                "private key must look like PRIVATE+KEY+name+hex8+base64", code="invalid_key"
            )
        name, hexid, b64 = parts[2:]
        blob = _b64decode(b64, "private key")
        if len(blob) != 1 + ED25519_SEED_LEN or blob[0] not in tuple(KeyType):
            raise InputError(
                "private key must hold a type byte and a 32-byte seed", code="invalid_key"
            )
        key = cls.from_seed(name, blob[1:], KeyType(blob[0]))
        if key.public.key_id.hex() != hexid:
            raise InputError("private key ID does not match the key", code="invalid_key")
        return key

    @property
    def public(self) -> PublicKey:
        """The verifier half."""
        return PublicKey(
            self.name, self.key_type, bytes(self._signer.verify_key), self._signer.verify_key
        )

    def skey(self) -> str:
        """The private key string (write it only to a 0600 file; never log it)."""
        blob = base64.b64encode(bytes([self.key_type]) + self.seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.public.key_id.hex()}+{blob}"

    def sign(self, message: bytes) -> bytes:
        """Raw Ed25519 signature (64 bytes) of ``message``."""
        return self._signer.sign(message).signature

    def sign_domain(self, domain: bytes, payload: bytes) -> bytes:
        """Domain-separated signature (see module docstring)."""
        return self.sign(domain + payload)

    def with_type(self, key_type: KeyType) -> SigningKey:
        """The same key presented as another C2SP type."""
        return SigningKey(self.name, key_type, self.seed, self._signer)
