"""Signed notes: Go sumdb/note and C2SP vectors, strict parsing, verification rules."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.core.cosignature import cosign
from federation.core.keys import KeyType, PublicKey, SigningKey
from federation.core.note import (
    MAX_SIGNATURES,
    NoteSignature,
    SignedNote,
    add_signatures,
    sign_note,
    verify_note,
)
from federation.errors import InputError, VerificationError

SHARED = Path(__file__).resolve().parents[3].parent / "shared"
NOTE_VECTORS = SHARED / "vectors" / "signed-note-vectors.json"


def _seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


LOG = SigningKey.from_seed("log.example/one", _seed("test_note log"))
OTHER = SigningKey.from_seed("log.example/two", _seed("test_note other"))
WITNESS = SigningKey.from_seed(
    "witness.example/w", _seed("test_note witness"), KeyType.COSIGNATURE_V1
)


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    if not NOTE_VECTORS.exists():
        pytest.skip(f"shared vectors not found at {NOTE_VECTORS} (../shared is absent)")
    data: dict[str, Any] = json.loads(NOTE_VECTORS.read_text(encoding="utf-8"))
    return data


def _go_and_c2sp(vectors: dict[str, Any]) -> list[tuple[str, str]]:
    go, c2sp = vectors["go_sumdb_note"], vectors["c2sp_signed_note_example"]
    return [(go["signed_note"], go["vkey"]), (c2sp["signed_note"], c2sp["vkey"])]


def test_vectors_verify_and_roundtrip(vectors: dict[str, Any]) -> None:
    for text, vkey in _go_and_c2sp(vectors):
        key = PublicKey.parse(vkey)
        for data in (text, text.encode()):
            note = SignedNote.parse(data)
            assert note.serialise() == text
            assert verify_note(note, [key]) == (key,)


def test_go_skey_reproduces_go_signature(vectors: dict[str, Any]) -> None:
    go = vectors["go_sumdb_note"]
    key = SigningKey.parse(go["skey"])
    assert sign_note(go["text"], [key]).serialise() == go["signed_note"]


@pytest.mark.parametrize("change", ["xor01", "xor20", "delete", "insert"])
def test_every_one_byte_change_fails(vectors: dict[str, Any], change: str) -> None:
    for text, vkey in _go_and_c2sp(vectors):
        key = PublicKey.parse(vkey)
        original = text.encode()
        for pos in range(len(original)):
            data = bytearray(original)
            if change == "xor01":
                data[pos] ^= 0x01
            elif change == "xor20":
                data[pos] ^= 0x20
            elif change == "delete":
                del data[pos]
            else:
                data.insert(pos, original[pos])
            with pytest.raises(VerificationError) as info:
                verify_note(SignedNote.parse(bytes(data)), [key])
            assert info.value.code in {"malformed_note", "bad_note_signature", "unverified_note"}


def test_only_the_canonical_base64_character_verifies(vectors: dict[str, Any]) -> None:
    """The last base64 digit before '=' carries unused bits; only one value may be accepted."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for text, vkey in _go_and_c2sp(vectors):
        key = PublicKey.parse(vkey)
        pos = text.rindex("=") - 1
        accepted = []
        for ch in alphabet:
            try:
                verify_note(SignedNote.parse(text[:pos] + ch + text[pos + 1 :]), [key])
            except VerificationError:
                continue
            accepted.append(ch)
        assert accepted == [text[pos]]


def test_bad_vkeys_rejected(vectors: dict[str, Any]) -> None:
    for bad in vectors["go_sumdb_note"]["bad_vkeys"]:
        with pytest.raises(InputError):
            PublicKey.parse(bad)


def test_other_signature_ignored_when_unknown_verified_when_known(vectors: dict[str, Any]) -> None:
    go = vectors["go_sumdb_note"]
    both = SignedNote.parse(go["signed_note"] + go["other_sig_line"])
    peter, enoch = PublicKey.parse(go["vkey"]), PublicKey.parse(go["other_vkey"])
    assert len(both.signatures) == 2
    assert verify_note(both, [peter]) == (peter,)
    assert verify_note(both, [enoch]) == (enoch,)
    assert verify_note(both, [enoch, peter]) == (peter, enoch)
    assert both.serialise() == go["signed_note"] + go["other_sig_line"]


def test_same_name_other_key_is_ignored(vectors: dict[str, Any]) -> None:
    go = vectors["go_sumdb_note"]
    impostor = SigningKey.from_seed("PeterNeumann", _seed("impostor")).public
    with pytest.raises(VerificationError) as info:
        verify_note(SignedNote.parse(go["signed_note"]), [impostor])
    assert info.value.code == "unverified_note"


def test_failing_known_signature_rejects_whole_note() -> None:
    note = sign_note("hello\n", [LOG, OTHER])
    broken = NoteSignature(OTHER.name, OTHER.public.key_id, bytes(64))
    forged = SignedNote(note.text, (note.signatures[0], broken))
    assert verify_note(forged, [LOG.public]) == (LOG.public,)  # OTHER unknown: ignored
    with pytest.raises(VerificationError) as info:
        verify_note(forged, [LOG.public, OTHER.public])
    assert info.value.code == "bad_note_signature"


def test_unverified_when_no_known_key() -> None:
    with pytest.raises(VerificationError) as info:
        verify_note(sign_note("hello\n", [LOG]), [OTHER.public])
    assert info.value.code == "unverified_note"


def test_many_signature_lines_accepted_and_capped() -> None:
    keys = [SigningKey.from_seed(f"k{i}.example", _seed(f"many {i}")) for i in range(20)]
    note = SignedNote.parse(sign_note("many signers\n", keys).serialise())
    assert verify_note(note, [k.public for k in keys]) == tuple(k.public for k in keys)
    line = note.signatures[0].line()
    at_cap = note.text + "\n" + line * MAX_SIGNATURES
    assert len(SignedNote.parse(at_cap).signatures) == MAX_SIGNATURES
    with pytest.raises(VerificationError, match="more than"):
        SignedNote.parse(at_cap + line)


@pytest.mark.parametrize(
    "data",
    [
        "text\n\n",  # no signature lines
        "text\n— a QUJDREVG\n",  # no blank line
        "text\n\n— a QUJDREVG",  # last line not terminated
        "text\n\n— a QUJDREVG\n\n",  # trailing blank line
        "text\n\n\n",
        "te\x01xt\n\n— a QUJDREVG\n",  # control character
        "te\rxt\n\n— a QUJDREVG\n",
        "text\n\n— a QUJDREVG\r\n",
        "text\n\n-- a QUJDREVG\n",  # not an em dash
        "text\n\n—a QUJDREVG\n",
        "text\n\n— a  QUJDREVG\n",  # two spaces
        "text\n\n— a QUJDREVG extra\n",
        "text\n\n— QUJDREVG\n",  # no name
        "text\n\n—  QUJDREVG\n",  # empty name
        "text\n\n— a+b QUJDREVG\n",  # '+' in name
        "text\n\n— a\u00a0b QUJDREVG\n",  # Unicode space in name
        "text\n\n— a QUJDRA==\n",  # only 4 bytes: key id, no signature
        "text\n\n— a QUJDREVH\n",  # fine base64 (control for the next one)...
        "text\n\n— a QUJDREU=\n",
        "text\n\n— a QUJDREV=\n",  # ...non-canonical padding bits
        "text\n\n— a QUJDREVG=\n",  # bad padding
        "text\n\n— a QUJD*EVG\n",
        "",
    ],
)
def test_malformed_notes_rejected(data: str) -> None:
    if data in {"text\n\n— a QUJDREVH\n", "text\n\n— a QUJDREU=\n"}:
        assert SignedNote.parse(data).serialise() == data  # the controls parse
        return
    with pytest.raises(VerificationError) as info:
        SignedNote.parse(data)
    assert info.value.code == "malformed_note"


def test_invalid_utf8_rejected() -> None:
    with pytest.raises(VerificationError) as info:
        SignedNote.parse(b"caf\xe9\n\n\xe2\x80\x94 a QUJDREVG\n")
    assert info.value.code == "malformed_note"


def test_lone_surrogate_is_not_utf8() -> None:
    with pytest.raises(VerificationError) as info:
        SignedNote.parse("a\ud800\n\n— a QUJDREVG\n")
    assert info.value.code == "malformed_note"
    with pytest.raises(InputError):
        sign_note("a\udfff\n", [LOG])


def test_text_of_one_newline_is_a_note() -> None:
    note = SignedNote.parse("\n\n— a QUJDREVG\n")
    assert note.text == "\n"
    assert note.signatures == (NoteSignature("a", b"ABCD", b"EF"),)


def test_empty_text_line_is_allowed_and_last_blank_line_separates() -> None:
    note = sign_note("a\n\nb\n\n", [LOG])
    wire = note.serialise()
    assert wire.startswith("a\n\nb\n\n\n— ")
    assert SignedNote.parse(wire) == note
    assert verify_note(SignedNote.parse(wire), [LOG.public]) == (LOG.public,)


@pytest.mark.parametrize("text", ["no newline", "ctl\x7f ok but\x00\n", "tab\there\n"])
def test_sign_note_rejects_bad_text(text: str) -> None:
    with pytest.raises(InputError):
        sign_note(text, [LOG])


def test_sign_note_needs_note_keys() -> None:
    with pytest.raises(InputError):
        sign_note("x\n", [])
    with pytest.raises(InputError):
        sign_note("x\n", [WITNESS])


def test_signed_note_requires_a_signature() -> None:
    with pytest.raises(VerificationError):
        SignedNote("x\n", ())


def test_add_signatures_appends_and_drops_duplicates() -> None:
    first = sign_note("merge me\n", [LOG])
    second = sign_note("merge me\n", [OTHER])
    merged = add_signatures(first, [*second.signatures, *first.signatures])
    assert merged.signatures == (first.signatures[0], second.signatures[0])
    assert verify_note(merged, [LOG.public, OTHER.public]) == (LOG.public, OTHER.public)


def test_cosignature_keys_verify_through_verify_note() -> None:
    note = sign_note("origin.example\n3\n" + "A" * 43 + "=\n", [LOG])
    cosigned = add_signatures(note, [cosign(note.text, WITNESS, 1_700_000_123)])
    wire = SignedNote.parse(cosigned.serialise())
    assert verify_note(wire, [LOG.public, WITNESS.public]) == (LOG.public, WITNESS.public)
    assert verify_note(wire, [WITNESS.public]) == (WITNESS.public,)
    sig = cosigned.signatures[1]
    later = (1_700_000_124).to_bytes(8, "big") + sig.signature[8:]
    tampered = SignedNote(
        note.text, (note.signatures[0], NoteSignature(sig.name, sig.key_id, later))
    )
    with pytest.raises(VerificationError) as info:
        verify_note(tampered, [LOG.public, WITNESS.public])
    assert info.value.code == "bad_note_signature"
    # The same key as a plain note key has another key ID: its cosignature is ignored.
    as_note_key = WITNESS.public.with_type(KeyType.ED25519)
    with pytest.raises(VerificationError) as info:
        verify_note(wire, [as_note_key])
    assert info.value.code == "unverified_note"


def test_known_keys_sharing_a_name_are_told_apart_by_key_id() -> None:
    note = sign_note("x\n", [LOG])
    twin = PublicKey.from_raw(LOG.name, KeyType.ED25519, OTHER.public.raw)
    assert verify_note(note, [LOG.public, twin]) == (LOG.public,)
    assert verify_note(note, [LOG.public, LOG.public]) == (LOG.public,)


_TEXT_CHARS = st.characters(codec="utf-8", exclude_characters="".join(map(chr, range(0x20))))
_NAME = st.text(
    st.characters(codec="utf-8", min_codepoint=0x21).filter(lambda c: not c.isspace() and c != "+"),
    min_size=1,
    max_size=20,
)
_LINE = st.text(_TEXT_CHARS, max_size=30)
_NOTE_TEXT = st.lists(_LINE, min_size=1, max_size=6).map(lambda ls: "\n".join(ls) + "\n")
_SIG = st.builds(
    NoteSignature, _NAME, st.binary(min_size=4, max_size=4), st.binary(min_size=1, max_size=80)
)


@settings(max_examples=150, deadline=None)
@given(text=_NOTE_TEXT, sigs=st.lists(_SIG, min_size=1, max_size=5))
def test_note_roundtrip(text: str, sigs: list[NoteSignature]) -> None:
    note = SignedNote(text, tuple(sigs))
    wire = note.serialise()
    assert SignedNote.parse(wire) == note
    assert SignedNote.parse(wire.encode()) == note
    assert SignedNote.parse(wire).serialise() == wire


@settings(max_examples=40, deadline=None)
@given(text=_NOTE_TEXT)
def test_signed_text_verifies_after_roundtrip(text: str) -> None:
    note = SignedNote.parse(sign_note(text, [LOG, OTHER]).serialise())
    assert note.text == text
    assert verify_note(note, [OTHER.public]) == (OTHER.public,)
