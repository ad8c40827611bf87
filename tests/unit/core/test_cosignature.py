"""Witness cosignatures (C2SP tlog-cosignature, cosignature/v1): message, layout, KATs."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.core.checkpoint import Checkpoint, checkpoint_cosignatures, open_checkpoint
from federation.core.cosignature import cosign, cosignature_message, verify_cosignature
from federation.core.keys import KeyType, PublicKey, SigningKey, key_id
from federation.core.note import NoteSignature, SignedNote, verify_note
from federation.errors import InputError, VerificationError

REPO = Path(__file__).resolve().parents[3]
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
# The cosignature line of the tlog-cosignature spec's example (its witness key is not published).
SPEC_COSIGNATURE_LINE = (
    "\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlr"
    "DJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
)
WITNESS = SigningKey.from_seed(
    "witness.example/w",
    hashlib.sha256(b"test_cosignature witness").digest(),
    KeyType.COSIGNATURE_V1,
)


def load_kat() -> ModuleType:
    """Load the generator by path: tests/ is not a package, and must not need to be."""
    spec = importlib.util.spec_from_file_location(
        "kat_notes", Path(__file__).with_name("kat_notes.py")
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_message_matches_spec_example() -> None:
    assert cosignature_message(SPEC_BODY, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\n" + SPEC_BODY.encode()
    )
    assert cosignature_message(SPEC_BODY, 0).startswith(b"cosignature/v1\ntime 0\n")


@pytest.mark.parametrize(("body", "timestamp"), [(SPEC_BODY, -1), (SPEC_BODY, 2**63), ("x", 1)])
def test_message_rejects_bad_input(body: str, timestamp: int) -> None:
    with pytest.raises(InputError):
        cosignature_message(body, timestamp)


def test_spec_example_line_layout() -> None:
    """The spec's example decodes as key ID || u64 big-endian timestamp || 64-byte signature."""
    sig = NoteSignature.parse_line(SPEC_COSIGNATURE_LINE)
    assert sig.name == "witness.example.com/w1"
    assert len(sig.signature) == 72
    assert int.from_bytes(sig.signature[:8], "big") == 1679315147


def test_cosign_uses_type_04_key_id() -> None:
    sig = cosign(SPEC_BODY, WITNESS, 1_700_000_000)
    raw = WITNESS.public.raw
    assert sig.key_id == key_id(WITNESS.name, KeyType.COSIGNATURE_V1, raw)
    assert sig.key_id != key_id(WITNESS.name, KeyType.ED25519, raw)
    assert sig.signature[:8] == (1_700_000_000).to_bytes(8, "big")
    WITNESS.public.verify(cosignature_message(SPEC_BODY, 1_700_000_000), sig.signature[8:])
    # A type 0x01 handle on the same key cosigns identically.
    assert cosign(SPEC_BODY, WITNESS.with_type(KeyType.ED25519), 1_700_000_000) == sig


def test_verify_returns_timestamp() -> None:
    sig = cosign(SPEC_BODY, WITNESS, 1234)
    assert verify_cosignature(SPEC_BODY, sig, WITNESS.public) == 1234
    assert verify_cosignature(SPEC_BODY, sig, WITNESS.public.with_type(KeyType.ED25519)) == 1234


def _expect_bad(body: str, sig: NoteSignature, key: PublicKey) -> None:
    with pytest.raises(VerificationError) as info:
        verify_cosignature(body, sig, key)
    assert info.value.code == "bad_cosignature"


def test_verify_rejects_tampering() -> None:
    sig = cosign(SPEC_BODY, WITNESS, 1234)
    _expect_bad(SPEC_BODY.replace("20852163", "20852164"), sig, WITNESS.public)
    later = NoteSignature(sig.name, sig.key_id, (1235).to_bytes(8, "big") + sig.signature[8:])
    _expect_bad(SPEC_BODY, later, WITNESS.public)
    _expect_bad(SPEC_BODY, NoteSignature(sig.name, sig.key_id, sig.signature[:-1]), WITNESS.public)
    _expect_bad(
        SPEC_BODY, NoteSignature("other.example", sig.key_id, sig.signature), WITNESS.public
    )
    _expect_bad(SPEC_BODY, NoteSignature(sig.name, b"\0\0\0\0", sig.signature), WITNESS.public)
    huge = NoteSignature(sig.name, sig.key_id, (2**63).to_bytes(8, "big") + sig.signature[8:])
    _expect_bad(SPEC_BODY, huge, WITNESS.public)
    _expect_bad("no newline", sig, WITNESS.public)
    stranger = SigningKey.from_seed(WITNESS.name, bytes(32), KeyType.COSIGNATURE_V1)
    _expect_bad(SPEC_BODY, sig, stranger.public)


def test_cosignature_is_not_a_note_signature() -> None:
    """Domain separation: the cosigned message is not the checkpoint text."""
    sig = cosign(SPEC_BODY, WITNESS, 1234)
    as_plain = NoteSignature(
        sig.name, WITNESS.public.with_type(KeyType.ED25519).key_id, sig.signature[8:]
    )
    with pytest.raises(VerificationError):
        verify_note(SignedNote(SPEC_BODY, (as_plain,)), [WITNESS.public.with_type(KeyType.ED25519)])


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    timestamp=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_cosign_verify_roundtrip(size: int, root: bytes, timestamp: int) -> None:
    body = Checkpoint("log.example", size, root).body()
    line = cosign(body, WITNESS, timestamp).line()
    parsed = NoteSignature.parse_line(line[:-1])
    assert verify_cosignature(body, parsed, WITNESS.public) == timestamp


def test_kat_vectors_match_committed_file() -> None:
    kat = load_kat()
    committed = (REPO / "spec" / "vectors" / "cosignature.json").read_text(encoding="utf-8")
    doc: dict[str, Any] = kat.build_vectors()["cosignature.json"]
    assert kat.render(doc) == committed


def test_kat_cosigned_note_verifies() -> None:
    doc = json.loads((REPO / "spec" / "vectors" / "cosignature.json").read_text(encoding="utf-8"))
    witness = PublicKey.parse(doc["witness_vkey"])
    log = PublicKey.parse(doc["log_vkey"])
    assert witness.key_type == KeyType.COSIGNATURE_V1
    assert witness.key_id.hex() == doc["witness_key_id_hex"]
    assert SigningKey.parse(doc["witness_skey"]).public == witness
    assert doc["signed_message"].encode() == cosignature_message(
        doc["checkpoint_body"], doc["timestamp"]
    )
    witness.verify(doc["signed_message"].encode(), bytes.fromhex(doc["signature_hex"])[8:])
    note = SignedNote.parse(doc["cosigned_note"])
    assert note.serialise() == doc["cosigned_note"]
    assert open_checkpoint(note, log).body() == doc["checkpoint_body"]
    assert checkpoint_cosignatures(note, [witness]) == {witness.name: doc["timestamp"]}
    assert note.signatures[1].line() == doc["signature_line"]
