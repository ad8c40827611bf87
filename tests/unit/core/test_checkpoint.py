"""Checkpoints: strict body format, signing/opening, cosignature collection, KATs."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.core.checkpoint import (
    Checkpoint,
    checkpoint_cosignatures,
    open_checkpoint,
    sign_checkpoint,
)
from federation.core.cosignature import cosign
from federation.core.keys import KeyType, PublicKey, SigningKey
from federation.core.note import NoteSignature, SignedNote, add_signatures, sign_note
from federation.errors import InputError, VerificationError

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared"
SPEC_ROOT_B64 = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
SPEC_BODY = f"example.com/behind-the-sofa\n20852163\n{SPEC_ROOT_B64}\n"


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


def _key(label: str, name: str, key_type: KeyType = KeyType.ED25519) -> SigningKey:
    return SigningKey.from_seed(name, hashlib.sha256(label.encode()).digest(), key_type)


LOG = _key("test_checkpoint log", "log.example/hashfed")
W1 = _key("test_checkpoint w1", "w1.example", KeyType.COSIGNATURE_V1)
W2 = _key("test_checkpoint w2", "w2.example", KeyType.COSIGNATURE_V1)
W3 = _key("test_checkpoint w3", "w3.example", KeyType.COSIGNATURE_V1)
ROOT = hashlib.sha256(b"root").digest()


def test_spec_example_body_roundtrips() -> None:
    cp = Checkpoint.parse_body(SPEC_BODY)
    assert cp == Checkpoint(
        "example.com/behind-the-sofa", 20852163, base64.b64decode(SPEC_ROOT_B64)
    )
    assert cp.body() == SPEC_BODY


def test_extensions_and_empty_tree() -> None:
    cp = Checkpoint("o", 0, ROOT, ("ext one", "ext+2"))
    assert cp.body().endswith("\next one\next+2\n")
    assert Checkpoint.parse_body(cp.body()) == cp


@pytest.mark.parametrize(
    "body",
    [
        f"o\n01\n{SPEC_ROOT_B64}\n",  # leading zero
        f"o\n00\n{SPEC_ROOT_B64}\n",
        f"o\n+1\n{SPEC_ROOT_B64}\n",
        f"o\n-1\n{SPEC_ROOT_B64}\n",
        f"o\n 1\n{SPEC_ROOT_B64}\n",
        f"o\n1 \n{SPEC_ROOT_B64}\n",
        f"o\n1_000\n{SPEC_ROOT_B64}\n",
        f"o\n\u0661\n{SPEC_ROOT_B64}\n",  # Arabic-Indic digit one
        f"o\n\n{SPEC_ROOT_B64}\n",
        f"o\n18446744073709551616\n{SPEC_ROOT_B64}\n",  # 2^64
        f"o\n{'9' * 30}\n{SPEC_ROOT_B64}\n",
        f"\n1\n{SPEC_ROOT_B64}\n",  # empty origin
        f"o\r\n1\n{SPEC_ROOT_B64}\n",
        f"o\x00\n1\n{SPEC_ROOT_B64}\n",
        f"o\n1\n{SPEC_ROOT_B64}",  # no final newline
        "o\n1\n",  # no root
        "o\n1\n\n",
        f"o\n1\n{SPEC_ROOT_B64[:-1]}\n",  # bad padding
        f"o\n1\n{base64.b64encode(bytes(31)).decode()}\n",  # 31 bytes
        f"o\n1\n{base64.b64encode(bytes(33)).decode()}\n",
        f"o\n1\n{SPEC_ROOT_B64[:-2]}J=\n",  # non-canonical last digit
        f"o\n1\n{SPEC_ROOT_B64}\n\n",  # empty extension line
        f"o\n1\n{SPEC_ROOT_B64}\next\n\n",
        f"o\n1\n{SPEC_ROOT_B64}\ne\tx\n",
    ],
)
def test_parse_body_is_strict(body: str) -> None:
    with pytest.raises(VerificationError) as info:
        Checkpoint.parse_body(body)
    assert info.value.code == "malformed_checkpoint"


def test_largest_tree_size_accepted() -> None:
    body = f"o\n18446744073709551615\n{SPEC_ROOT_B64}\n"
    assert Checkpoint.parse_body(body).size == 2**64 - 1


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, ROOT, ()),
        ("a\nb", 1, ROOT, ()),
        ("o", -1, ROOT, ()),
        ("o", 2**64, ROOT, ()),
        ("o", 1, ROOT[:31], ()),
        ("o", 1, ROOT, ("",)),
        ("o", 1, ROOT, ("a\nb",)),
    ],
)
def test_constructor_validates(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    with pytest.raises(VerificationError):
        Checkpoint(origin, size, root, extensions)


def test_sign_and_open() -> None:
    cp = Checkpoint(LOG.name, 42, ROOT)
    note = sign_checkpoint(cp, LOG)
    assert note.text == cp.body()
    for form in (note, note.serialise(), note.serialise().encode()):
        assert open_checkpoint(form, LOG.public) == cp
        assert open_checkpoint(form, LOG.public, expected_origin=LOG.name) == cp


def test_open_rejects_wrong_origin_key_and_tampering() -> None:
    note = sign_checkpoint(Checkpoint(LOG.name, 42, ROOT), LOG)
    with pytest.raises(VerificationError) as info:
        open_checkpoint(note, LOG.public, expected_origin="other.example/log")
    assert info.value.code == "origin_mismatch"
    with pytest.raises(VerificationError) as info:
        open_checkpoint(note, _key("stranger", LOG.name).public)
    assert info.value.code == "unverified_note"
    tampered = note.serialise().replace("\n42\n", "\n43\n")
    with pytest.raises(VerificationError) as info:
        open_checkpoint(tampered, LOG.public)
    assert info.value.code == "bad_note_signature"
    with pytest.raises(InputError):
        open_checkpoint(note, W1.public)


def test_open_rejects_signed_but_malformed_body() -> None:
    note = sign_note("o\n01\n" + SPEC_ROOT_B64 + "\n", [LOG])
    with pytest.raises(VerificationError) as info:
        open_checkpoint(note, LOG.public)
    assert info.value.code == "malformed_checkpoint"


def test_open_ignores_cosignatures_and_unknown_signatures() -> None:
    cp = Checkpoint(LOG.name, 7, ROOT)
    note = sign_checkpoint(cp, LOG)
    stranger = _key("stranger", "stranger.example")
    cosigned = add_signatures(
        note,
        [
            cosign(cp.body(), W1, 100),
            NoteSignature(stranger.name, stranger.public.key_id, bytes(64)),
        ],
    )
    assert open_checkpoint(cosigned.serialise(), LOG.public) == cp


def test_checkpoint_cosignatures() -> None:
    cp = Checkpoint(LOG.name, 9, ROOT)
    note = add_signatures(
        sign_checkpoint(cp, LOG),
        [cosign(cp.body(), W1, 1000), cosign(cp.body(), W2, 2000), cosign(cp.body(), W1, 1500)],
    )
    parsed = SignedNote.parse(note.serialise())
    witnesses = [W1.public, W2.public, W3.public]
    assert checkpoint_cosignatures(parsed, witnesses) == {"w1.example": 1500, "w2.example": 2000}
    assert checkpoint_cosignatures(parsed, [W2.public]) == {"w2.example": 2000}
    assert checkpoint_cosignatures(parsed, [W3.public]) == {}
    # A witness key handed over as type 0x01 is still matched by its 0x04 key ID.
    as_note_key = W2.public.with_type(KeyType.ED25519)
    assert checkpoint_cosignatures(parsed, [as_note_key]) == {"w2.example": 2000}


def test_checkpoint_cosignatures_rejects_invalid_known_cosignature() -> None:
    cp = Checkpoint(LOG.name, 9, ROOT)
    other = Checkpoint(LOG.name, 10, ROOT)
    bad = cosign(other.body(), W1, 1000)  # W1's signature over another checkpoint
    note = add_signatures(sign_checkpoint(cp, LOG), [bad, cosign(cp.body(), W2, 5)])
    assert checkpoint_cosignatures(note, [W2.public]) == {"w2.example": 5}
    with pytest.raises(VerificationError) as info:
        checkpoint_cosignatures(note, [W1.public, W2.public])
    assert info.value.code == "bad_cosignature"


_ORIGIN = st.text(st.characters(codec="utf-8", min_codepoint=0x20), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    origin=_ORIGIN,
    size=st.integers(min_value=0, max_value=2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(_ORIGIN, max_size=3),
)
def test_body_roundtrip(origin: str, size: int, root: bytes, extensions: list[str]) -> None:
    cp = Checkpoint(origin, size, root, tuple(extensions))
    assert Checkpoint.parse_body(cp.body()) == cp
    assert Checkpoint.parse_body(cp.body()).body() == cp.body()


def test_kat_vectors_match_committed_file() -> None:
    kat = load_kat()
    committed = (REPO / "spec" / "vectors" / "checkpoint.json").read_text(encoding="utf-8")
    doc: dict[str, Any] = kat.build_vectors()["checkpoint.json"]
    assert kat.render(doc) == committed


def test_kat_checkpoints_open() -> None:
    doc = json.loads((REPO / "spec" / "vectors" / "checkpoint.json").read_text(encoding="utf-8"))
    key = PublicKey.parse(doc["log_vkey"])
    assert SigningKey.parse(doc["log_skey"]).public == key
    for item in doc["checkpoints"]:
        cp = open_checkpoint(item["signed_note"], key, expected_origin=key.name)
        assert (cp.size, cp.root.hex(), cp.body()) == (item["size"], item["root_hex"], item["body"])


def test_kat_roots_match_shared_reference_tree() -> None:
    path = SHARED / "vectors" / "rfc6962-reference-tree.json"
    if not path.exists():
        pytest.skip(f"shared vectors not found at {path} (../shared is absent)")
    reference = json.loads(path.read_text(encoding="utf-8"))
    doc = json.loads((REPO / "spec" / "vectors" / "checkpoint.json").read_text(encoding="utf-8"))
    assert doc["leaf_inputs_hex"] == reference["leaf_inputs_hex"]
    for item in doc["checkpoints"]:
        assert item["root_hex"] == reference["roots_by_size_hex"][str(item["size"])]
