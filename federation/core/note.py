"""C2SP signed notes: text signed by one or more named keys (c2sp.org/signed-note@v1.0.0).

A signed note is the note text (ending in a newline), one empty line, and one or more signature
lines ``— <name> base64(keyid || signature)``.  Checkpoints and witness cosignatures are signed
notes, so this module is the single parser of that format in hashfed.

Verification follows the C2SP rules and Go's ``golang.org/x/mod/sumdb/note``: signatures by
keys we do not know (name *and* key ID) are ignored; a signature by a known key that fails
rejects the whole note; a note with no verified known signature is rejected.  Parsing is
stricter than Go in one place: base64 must be canonical (no stray padding bits), so that a
parsed note re-serialises byte for byte and no two encodings of one note exist.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from federation.core.keys import KeyType, PublicKey, SigningKey
from federation.errors import InputError, VerificationError

SIGNATURE_PREFIX = "\u2014 "  # em dash, space
KEY_ID_LEN = 4
# C2SP: verifiers MUST accept at least 16 signatures and SHOULD cap them; Go caps at 100.
# One log signature plus a witness quorum fits comfortably; more is an abuse of the parser.
MAX_SIGNATURES = 100


def _malformed(reason: str) -> VerificationError:
    return VerificationError(f"malformed signed note: {reason}", code="malformed_note")


# Characters a note may not hold: ASCII controls except newline, and lone surrogates (a str
# holding one cannot be UTF-8 encoded, so it is not valid UTF-8 on the wire).
_FORBIDDEN = re.compile("[\x00-\x09\x0b-\x1f\ud800-\udfff]")


def _check_no_controls(text: str, what: str) -> None:
    """C2SP: valid UTF-8 with no ASCII control characters (below U+0020) other than newline."""
    bad = _FORBIDDEN.search(text)
    if bad is not None:
        raise _malformed(f"{what} contains forbidden character U+{ord(bad.group()):04X}")


def _valid_name(name: str) -> bool:
    """C2SP key names: non-empty, no Unicode spaces, no '+'."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def b64decode_canonical(text: str) -> bytes:
    """Standard base64 (RFC 4648 §4) that must re-encode to exactly ``text``."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None
    if base64.b64encode(raw).decode() != text:
        raise ValueError("not canonical base64")
    return raw


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a note."""

    name: str
    """The signer's key name (the text between the em dash and the base64)."""
    key_id: bytes
    """The 4-byte key ID that, with the name, identifies the key and its algorithm."""
    signature: bytes
    """The algorithm's signature bytes after the key ID (64 for Ed25519, 72 for a cosignature)."""

    def __post_init__(self) -> None:
        if not _valid_name(self.name):
            raise _malformed(f"signature key name {self.name!r} is empty or has spaces or '+'")
        _check_no_controls(self.name, "signature key name")
        if len(self.key_id) != KEY_ID_LEN:
            raise _malformed("key ID must be 4 bytes")
        if not self.signature:
            raise _malformed(f"empty signature by {self.name}")

    def line(self) -> str:
        """The signature line, including its final newline."""
        blob = base64.b64encode(self.key_id + self.signature).decode()
        return f"{SIGNATURE_PREFIX}{self.name} {blob}\n"

    @classmethod
    def parse_line(cls, line: str) -> NoteSignature:
        """Parse one signature line without its newline."""
        if not line.startswith(SIGNATURE_PREFIX):
            raise _malformed("signature line does not start with an em dash and a space")
        name, sep, blob = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not sep or " " in blob:
            raise _malformed("signature line must be '— name base64'")
        try:
            raw = b64decode_canonical(blob)
        except ValueError as exc:
            raise _malformed(f"signature by {name!r}: {exc}") from None
        if len(raw) <= KEY_ID_LEN:
            raise _malformed(f"signature by {name!r} is too short")
        return cls(name, raw[:KEY_ID_LEN], raw[KEY_ID_LEN:])


@dataclass(frozen=True)
class SignedNote:
    """A note text with its signature lines, in the order they appear."""

    text: str
    """The note text, ending with a newline (the blank separator line is not part of it)."""
    signatures: tuple[NoteSignature, ...]
    """The signature lines; at least one and at most :data:`MAX_SIGNATURES`."""

    def __post_init__(self) -> None:
        if not self.text.endswith("\n"):
            raise _malformed("text must end with a newline")
        _check_no_controls(self.text, "text")
        if not self.signatures:
            raise _malformed("a signed note needs at least one signature")
        if len(self.signatures) > MAX_SIGNATURES:
            raise _malformed(f"more than {MAX_SIGNATURES} signatures")

    def serialise(self) -> str:
        """The wire form: text, blank line, signature lines."""
        return self.text + "\n" + "".join(sig.line() for sig in self.signatures)

    @classmethod
    def parse(cls, data: str | bytes) -> SignedNote:
        """Parse a signed note (no verification); raises VerificationError ``malformed_note``."""
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError:
                raise _malformed("not valid UTF-8") from None
        _check_no_controls(data, "note")
        # The text is separated from the signatures by the LAST empty line (C2SP).
        split = data.rfind("\n\n")
        if split < 0:
            raise _malformed("no blank line before the signatures")
        text, block = data[: split + 1], data[split + 2 :]
        if not block.endswith("\n"):
            raise _malformed("signature block must end with a newline")
        lines = block[:-1].split("\n")
        if len(lines) > MAX_SIGNATURES:
            raise _malformed(f"more than {MAX_SIGNATURES} signatures")
        return cls(text, tuple(NoteSignature.parse_line(line) for line in lines))


def sign_note(text: str, keys: Sequence[SigningKey]) -> SignedNote:
    """Sign ``text`` with each of ``keys`` (Ed25519 note keys, type 0x01).

    Cosignature keys (type 0x04) sign a timestamped message instead; use
    :func:`federation.core.cosignature.cosign` for them.
    """
    if not keys:
        raise InputError("sign_note needs at least one key", code="invalid_note")
    for key in keys:
        if key.key_type != KeyType.ED25519:
            raise InputError(
                f"key {key.name} has type {key.key_type.name}; notes are signed with ED25519 keys",
                code="invalid_key",
            )
    if not text.endswith("\n"):
        raise InputError("note text must end with a newline", code="invalid_note", field="text")
    try:
        _check_no_controls(text, "text")
    except VerificationError as exc:
        raise InputError(exc.message, code="invalid_note", field="text") from None
    message = text.encode()
    sigs = tuple(NoteSignature(k.name, k.public.key_id, k.sign(message)) for k in keys)
    return SignedNote(text, sigs)


def add_signatures(note: SignedNote, extra: Sequence[NoteSignature]) -> SignedNote:
    """The note with ``extra`` signature lines appended; exact duplicates are dropped."""
    merged = list(note.signatures)
    for sig in extra:
        if sig not in merged:
            merged.append(sig)
    return SignedNote(note.text, tuple(merged))


def _verify_one(text: str, sig: NoteSignature, key: PublicKey) -> None:
    if key.key_type == KeyType.COSIGNATURE_V1:
        # cosignature builds on this module (it returns NoteSignature), so import it late to
        # avoid an import cycle; verify_note must still understand every key type keys.py has.
        from federation.core.cosignature import verify_cosignature

        verify_cosignature(text, sig, key)
        return
    key.verify(text.encode(), sig.signature)


def verify_note(note: SignedNote, known: Sequence[PublicKey]) -> tuple[PublicKey, ...]:
    """Verify ``note`` against ``known`` keys; return the keys whose signatures verified.

    Signatures whose (name, key ID) match no known key are ignored.  A failing signature by a
    known key raises ``bad_note_signature``; no verified known key raises ``unverified_note``.
    """
    by_id: dict[tuple[str, bytes], PublicKey] = {}
    for key in known:
        ident = (key.name, key.key_id)
        if ident in by_id and by_id[ident] != key:
            raise InputError(
                f"two different known keys share name and key ID {key.name}+{key.key_id.hex()}",
                code="ambiguous_key",
            )
        by_id[ident] = key
    verified: list[PublicKey] = []
    for sig in note.signatures:
        signer = by_id.get((sig.name, sig.key_id))
        if signer is None:
            continue
        try:
            _verify_one(note.text, sig, signer)
        except VerificationError:
            raise VerificationError(
                f"note signature by known key {signer.name}+{signer.key_id.hex()} does not verify",
                code="bad_note_signature",
            ) from None
        if signer not in verified:
            verified.append(signer)
    if not verified:
        raise VerificationError("note is not signed by any known key", code="unverified_note")
    return tuple(verified)
