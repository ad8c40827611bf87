"""Entries: known answers, round trips, one leaf encoding per entry, tampering, field errors.

The known answers in spec/vectors/entries.json are rebuilt here from fixed seeds; to
regenerate them after a deliberate wire change run
``HASHFED_WRITE_VECTORS=1 .venv/bin/pytest tests/unit/core/test_entries.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from federation.core.canonical import canonical_json
from federation.core.entries import (
    EntryRef,
    Opinion,
    Retraction,
    SignedEntry,
    Submission,
    entry_adapter,
    entry_json,
    entry_leaf_hash,
    entry_ref,
    leaf_bytes,
    leaf_hash,
    parse_leaf,
    sign_entry,
    signing_payload,
    verify_entry,
    verify_leaf,
)
from federation.core.keys import DOMAIN_ENTRY, SigningKey
from federation.core.labels import Category, ConfirmedBy, Labels, Severity, check_case_ref
from federation.core.signals import Md5Signal, PdqSignal, Sha256Signal
from federation.errors import VerificationError

REPO = Path(__file__).resolve().parents[3]
VECTORS = REPO / "spec" / "vectors" / "entries.json"


def seeded_key(label: str, name: str) -> SigningKey:
    """A fixed test key: seed = SHA-256 of a fixed string."""
    return SigningKey.from_seed(name, hashlib.sha256(label.encode()).digest())


NCA = seeded_key("hashfed test vector: nca.example entry key", "nca.example")
PLATFORM = seeded_key("hashfed test vector: platform.example entry key", "platform.example")

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
LABELS = Labels(
    categories=(Category.NCII_DEEPFAKE, Category.CSAM_AI_GENERATED),
    severity=Severity.HIGH,
    confirmed_by=ConfirmedBy.POLICE,
)


def sample_submission(**changes: Any) -> Submission:
    fields: dict[str, Any] = {
        "origin": "nca.example",
        "id": "sub-0001",
        "created": 1_700_000_000,
        "signal": PdqSignal(value=PDQ, quality=100),
        "labels": LABELS,
        "case_ref": "CR-2024-000123",
    }
    fields.update(changes)
    return Submission(**fields)


# -- known answers ---------------------------------------------------------------------------


def build_vectors() -> dict[str, Any]:
    first = sign_entry(sample_submission(), NCA)
    cases: list[tuple[str, SigningKey, Submission | Retraction | Opinion]] = [
        ("submission-pdq-with-case-ref", NCA, first.entry),
        (
            "submission-md5-minimal",
            NCA,
            Submission(
                origin="nca.example",
                id="sub-0002",
                created=1_700_000_060,
                signal=Md5Signal(value="d41d8cd98f00b204e9800998ecf8427e"),
                labels=Labels(
                    categories=(Category.CSAM,),
                    severity=Severity.CRITICAL,
                    confirmed_by=ConfirmedBy.HOTLINE,
                ),
            ),
        ),
        (
            "submission-sha256",
            NCA,
            Submission(
                origin="nca.example",
                id="sub:0003",
                created=1_700_000_120,
                signal=Sha256Signal(
                    value="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                ),
                labels=Labels(
                    categories=(Category.NCII,),
                    severity=Severity.MEDIUM,
                    confirmed_by=ConfirmedBy.PLATFORM,
                ),
                case_ref="hotline:42",
            ),
        ),
        (
            "retraction",
            NCA,
            Retraction(
                origin="nca.example",
                id="ret-0001",
                created=1_700_000_180,
                target=entry_ref(first, 0),
                reason="false-positive",
                note="Hash computed from the wrong file.",
            ),
        ),
        (
            "opinion-with-escapes-and-unicode",
            PLATFORM,
            Opinion(
                origin="platform.example",
                id="op-0001",
                created=1_700_000_240,
                target=entry_ref(first, 0),
                verdict="disputed_label",
                comment='Label "ncii-deepfake" looks wrong.\nRéévaluation demandée — 確認',
            ),
        ),
    ]
    out = []
    for name, key, entry in cases:
        signed = sign_entry(entry, key)
        leaf = leaf_bytes(signed)
        out.append(
            {
                "name": name,
                "signer": key.name,
                "entry": entry_json(entry),
                "signing_payload_hex": signing_payload(entry).hex(),
                "signature": signed.signature,
                "leaf": leaf.decode("utf-8"),
                "leaf_hex": leaf.hex(),
                "leaf_hash": entry_leaf_hash(signed).hex(),
            }
        )
    keys = [
        {
            "name": key.name,
            "seed": f"SHA-256({label!r})",
            "seed_hex": key.seed.hex(),
            "public_key": base64.b64encode(key.public.raw).decode(),
        }
        for key, label in (
            (NCA, "hashfed test vector: nca.example entry key"),
            (PLATFORM, "hashfed test vector: platform.example entry key"),
        )
    ]
    return {
        "description": (
            "hashfed/v1 entry known answers (spec/entries.md). signature = "
            "Ed25519(seed, 'hashfed/v1/entry\\n' || signing_payload); leaf = RFC 8785 of "
            "{entry, signature}; leaf_hash = SHA-256(0x00 || leaf)."
        ),
        "domain": DOMAIN_ENTRY.decode(),
        "keys": keys,
        "vectors": out,
    }


def test_vectors_file_matches_generator() -> None:
    expected = build_vectors()
    text = json.dumps(expected, indent=2, ensure_ascii=False) + "\n"
    if os.environ.get("HASHFED_WRITE_VECTORS"):
        VECTORS.write_text(text, encoding="utf-8")
    assert json.loads(VECTORS.read_text(encoding="utf-8")) == expected


def test_vectors_verify_independently() -> None:
    """Check the committed file with primitives only, not with the code that wrote it."""
    doc = json.loads(VECTORS.read_text(encoding="utf-8"))
    keys = {
        k["name"]: SigningKey.from_seed(k["name"], bytes.fromhex(k["seed_hex"])).public
        for k in doc["keys"]
    }
    for key in doc["keys"]:
        label = key["seed"].removeprefix("SHA-256('").removesuffix("')")
        assert hashlib.sha256(label.encode()).hexdigest() == key["seed_hex"]
    assert len(doc["vectors"]) == 5
    for vec in doc["vectors"]:
        payload = bytes.fromhex(vec["signing_payload_hex"])
        assert payload == rfc8785.dumps(vec["entry"])
        leaf = bytes.fromhex(vec["leaf_hex"])
        assert leaf == vec["leaf"].encode("utf-8")
        assert leaf == rfc8785.dumps({"entry": vec["entry"], "signature": vec["signature"]})
        keys[vec["signer"]].verify(DOMAIN_ENTRY + payload, base64.b64decode(vec["signature"]))
        assert hashlib.sha256(b"\x00" + leaf).hexdigest() == vec["leaf_hash"]
        signed = parse_leaf(leaf)
        verify_entry(signed, keys[vec["signer"]])
        assert verify_leaf(leaf, keys[vec["signer"]]) == signed
        assert leaf_bytes(signed) == leaf


# -- round trips -----------------------------------------------------------------------------


def _valid(check: Any) -> Any:
    def ok(value: str) -> bool:
        try:
            check(value)
        except ValueError:
            return False
        return True

    return ok


hexes = st.binary(min_size=32, max_size=32).map(bytes.hex)
member_ids = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,30}", fullmatch=True)
entry_ids = st.from_regex(r"[A-Za-z0-9._:-]{1,40}", fullmatch=True)
times = st.integers(0, 2**53 - 1)
signals = st.one_of(
    st.builds(PdqSignal, value=hexes, quality=st.integers(0, 100)),
    st.builds(Md5Signal, value=st.binary(min_size=16, max_size=16).map(bytes.hex)),
    st.builds(Sha256Signal, value=hexes),
)
labels = st.builds(
    Labels,
    categories=st.lists(st.sampled_from(Category), min_size=1, max_size=4, unique=True).map(tuple),
    severity=st.sampled_from(Severity),
    confirmed_by=st.sampled_from(ConfirmedBy),
)
case_refs = st.none() | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_:-]{0,30}", fullmatch=True).filter(
    _valid(check_case_ref)
)
texts = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=60
).filter(lambda t: "://" not in t and "@" not in t and "www." not in t.lower())


@st.composite
def entries(draw: st.DrawFn) -> Submission | Retraction | Opinion:
    origin = draw(member_ids)
    kind = draw(st.sampled_from(["submission", "retraction", "opinion"]))
    common = {"origin": origin, "id": draw(entry_ids), "created": draw(times)}
    if kind == "submission":
        return Submission(
            **common, signal=draw(signals), labels=draw(labels), case_ref=draw(case_refs)
        )
    target_origin = origin if kind == "retraction" else draw(member_ids)
    target = EntryRef(origin=target_origin, index=draw(times), leaf_hash=draw(hexes))
    text = draw(st.none() | texts)
    if kind == "retraction":
        reason = draw(
            st.sampled_from(["false-positive", "victim-withdrawal", "legal", "duplicate", "error"])
        )
        return Retraction(**common, target=target, reason=reason, note=text)
    verdict = draw(st.sampled_from(["true_positive", "false_positive", "disputed_label"]))
    return Opinion(**common, target=target, verdict=verdict, comment=text)


@settings(max_examples=150, deadline=None)
@given(entries())
def test_round_trip(entry: Submission | Retraction | Opinion) -> None:
    assert entry_adapter.validate_python(entry_json(entry)) == entry
    signed = sign_entry(entry, NCA)
    verify_entry(signed, NCA.public)
    leaf = leaf_bytes(signed)
    assert leaf == rfc8785.dumps(signed.model_dump(mode="json", exclude_none=True))
    back = parse_leaf(leaf)
    assert back == signed
    verify_entry(back, NCA.public)
    assert entry_leaf_hash(back) == leaf_hash(leaf)
    assert SignedEntry.model_validate_json(leaf) == signed
    assert verify_leaf(leaf, NCA.public) == signed


@settings(max_examples=150, deadline=None)
@given(entries(), st.data())
def test_any_byte_change_is_caught(entry: Submission | Retraction | Opinion, data: Any) -> None:
    """Any one-byte change of a leaf either fails to parse or fails its signature."""
    leaf = bytearray(leaf_bytes(sign_entry(entry, NCA)))
    pos = data.draw(st.integers(0, len(leaf) - 1))
    leaf[pos] = data.draw(st.integers(0, 255).filter(lambda b: b != leaf[pos]))
    with pytest.raises(VerificationError) as info:
        verify_entry(parse_leaf(bytes(leaf)), NCA.public)
    assert info.value.code in ("malformed_leaf", "bad_entry_signature")
    with pytest.raises(VerificationError) as again:
        verify_leaf(bytes(leaf), NCA.public)
    assert again.value.code == info.value.code


# -- tampering -------------------------------------------------------------------------------


def _signed_json() -> dict[str, Any]:
    signed = sign_entry(sample_submission(), NCA)
    return signed.model_dump(mode="json", exclude_none=True)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("origin",), "other.example"),
        (("id",), "sub-0002"),
        (("created",), 1_700_000_001),
        (("signal", "value"), "0" * 64),
        (("signal", "quality"), 99),
        (("labels", "severity"), "low"),
        (("labels", "confirmed_by"), "platform"),
        (("labels", "categories"), ["csam"]),
        (("case_ref",), "CR-2024-000124"),
    ],
)
def test_changed_field_breaks_signature(path: tuple[str, ...], value: Any) -> None:
    doc = _signed_json()
    node = doc["entry"]
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    signed = parse_leaf(canonical_json(doc))  # still a well-formed leaf …
    with pytest.raises(VerificationError) as info:  # … but not what the origin signed
        verify_entry(signed, NCA.public)
    assert info.value.code == "bad_entry_signature"
    with pytest.raises(VerificationError, match="not signed"):
        verify_leaf(canonical_json(doc), NCA.public)


def test_dropped_optional_field_breaks_signature() -> None:
    doc = _signed_json()
    del doc["entry"]["case_ref"]
    with pytest.raises(VerificationError, match="not signed"):
        verify_entry(parse_leaf(canonical_json(doc)), NCA.public)


def test_changed_signature_and_wrong_key_fail() -> None:
    signed = sign_entry(sample_submission(), NCA)
    raw = bytearray(base64.b64decode(signed.signature))
    raw[0] ^= 1
    flipped = SignedEntry(entry=signed.entry, signature=base64.b64encode(raw).decode())
    for candidate, key in ((flipped, NCA.public), (signed, PLATFORM.public)):
        with pytest.raises(VerificationError) as info:
            verify_entry(candidate, key)
        assert info.value.code == "bad_entry_signature"


def test_signature_is_domain_separated() -> None:
    entry = sample_submission()
    bare = NCA.sign(signing_payload(entry))  # same key, no domain prefix
    forged = SignedEntry(entry=entry, signature=base64.b64encode(bare).decode())
    with pytest.raises(VerificationError):
        verify_entry(forged, NCA.public)


def _leaf_text() -> str:
    return leaf_bytes(sign_entry(sample_submission(), NCA)).decode()


@pytest.mark.parametrize(
    ("name", "mutate"),
    [
        ("space after colon", lambda t: t.replace('"kind":', '"kind": ', 1)),
        ("trailing newline", lambda t: t + "\n"),
        ("leading space", lambda t: " " + t),
        ("float time", lambda t: t.replace('"created":1700000000', '"created":1700000000.0')),
        ("exponent time", lambda t: t.replace('"created":1700000000', '"created":17e8')),
        ("string time", lambda t: t.replace('"created":1700000000', '"created":"1700000000"')),
        ("bool quality", lambda t: t.replace('"quality":100', '"quality":true')),
        ("escaped ascii", lambda t: t.replace('"nca.example"', '"nca\\u002eexample"', 1)),
        ("escaped hyphen", lambda t: t.replace('"id":"sub-0001"', '"id":"sub\\u002d0001"')),
        ("uppercase hash", lambda t: t.replace("f8f8f0cee0f4a84f", "F8F8F0CEE0F4A84F")),
        (
            "unsorted categories",
            lambda t: t.replace(
                '["csam-ai-generated","ncii-deepfake"]', '["ncii-deepfake","csam-ai-generated"]'
            ),
        ),
        (
            "reordered keys",
            lambda t: t.replace(
                '{"entry":{"case_ref":"CR-2024-000123",',
                '{"entry":{"kind":"submission","case_ref":"CR-2024-000123",',
            ).replace(',"kind":"submission"', ""),
        ),
        ("explicit null", lambda t: t.replace('"case_ref":"CR-2024-000123"', '"case_ref":null')),
        ("duplicate key", lambda t: t.replace('"id":"sub-0001"', '"id":"sub-0001","id":"x1"')),
        ("unknown field", lambda t: t.replace('"id":"sub-0001"', '"id":"sub-0001","extra":1')),
        ("unknown kind", lambda t: t.replace('"kind":"submission"', '"kind":"key"')),
        ("utf-8 bom", lambda t: "\ufeff" + t),
        ("not json", lambda t: t[:-1]),
        ("array", lambda t: "[" + t + "]"),
        ("padded signature", lambda t: t.replace('=="}', '==="}')),
        ("huge int", lambda t: t.replace('"created":1700000000', '"created":9007199254740992')),
        ("negative time", lambda t: t.replace('"created":1700000000', '"created":-1')),
    ],
)
def test_non_canonical_or_invalid_leaf_is_rejected(name: str, mutate: Any) -> None:
    text = _leaf_text()
    mutated = mutate(text)
    assert mutated != text, f"mutation {name!r} did not apply"
    with pytest.raises(VerificationError) as info:
        parse_leaf(mutated.encode("utf-8"))
    assert info.value.code == "malformed_leaf"


def test_oversized_leaf_is_rejected() -> None:
    with pytest.raises(VerificationError, match="more than"):
        parse_leaf(b" " * 9000)


def test_malformed_leaf_names_the_field() -> None:
    doc = _signed_json()
    doc["entry"]["signal"]["value"] = "zz"
    with pytest.raises(VerificationError) as info:
        parse_leaf(canonical_json(doc))
    assert info.value.field == "entry.submission.signal.pdq.value"


# -- field errors ----------------------------------------------------------------------------


BASE = {
    "kind": "submission",
    "origin": "nca.example",
    "id": "sub-1",
    "created": 1,
    "signal": {"kind": "md5", "value": "d41d8cd98f00b204e9800998ecf8427e"},
    "labels": {"categories": ["csam"], "severity": "high", "confirmed_by": "police"},
}
REF = {"origin": "nca.example", "index": 0, "leaf_hash": "ab" * 32}


@pytest.mark.parametrize(
    ("changes", "loc", "words"),
    [
        ({"origin": "NCA"}, ("origin",), "lowercase"),
        ({"origin": ""}, ("origin",), "1-64"),
        ({"origin": "-nca"}, ("origin",), "start"),
        ({"id": "a b"}, ("id",), "may contain only"),
        ({"id": "x" * 129}, ("id",), "1-128"),
        ({"created": -5}, ("created",), "greater than or equal"),
        ({"created": True}, ("created",), "integer"),
        ({"created": "5"}, ("created",), "integer"),
        ({"created": 5.0}, ("created",), "integer"),
        ({"labels": {**BASE["labels"], "categories": []}}, ("labels", "categories"), "at least"),
        (
            {"labels": {**BASE["labels"], "categories": ["csam", "csam"]}},
            ("labels", "categories"),
            "repeat",
        ),
        ({"labels": {**BASE["labels"], "categories": ["cats"]}}, ("labels", "categories", 0), ""),
        ({"labels": {**BASE["labels"], "severity": "4"}}, ("labels", "severity"), ""),
        ({"labels": {**BASE["labels"], "taxonomy": "v2"}}, ("labels", "taxonomy"), ""),
        ({"labels": {**BASE["labels"], "confirmed_by": "me"}}, ("labels", "confirmed_by"), ""),
        ({"case_ref": "Jane Doe 1"}, ("case_ref",), "opaque"),
        ({"case_ref": "https://x.example/1"}, ("case_ref",), "URL"),
        ({"case_ref": "jane1@example.org"}, ("case_ref",), "e-mail"),
        ({"case_ref": "victim1.example"}, ("case_ref",), "domain"),
        ({"case_ref": "JaneDoe"}, ("case_ref",), "digit"),
        ({"case_ref": "http:123"}, ("case_ref",), "scheme"),
        ({"case_ref": "C" * 64 + "1"}, ("case_ref",), "1-64"),
        ({"signal": {"kind": "md5", "value": "abc"}}, ("signal", "md5", "value"), "32 hex"),
        (
            {"signal": {"kind": "pdq", "value": PDQ, "quality": 101}},
            ("signal", "pdq", "quality"),
            "",
        ),
        ({"extra": 1}, ("extra",), "Extra inputs"),
    ],
)
def test_bad_submission_names_the_field(
    changes: dict[str, Any], loc: tuple[Any, ...], words: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Submission.model_validate({**BASE, **changes})
    error = info.value.errors()[0]
    assert error["loc"] == loc
    assert words in error["msg"]


@pytest.mark.parametrize(
    ("model", "data", "loc", "words"),
    [
        (
            Retraction,
            {"target": {**REF, "origin": "other.example"}, "reason": "error"},
            ("target",),
            "own origin",
        ),
        (Retraction, {"target": REF, "reason": "oops"}, ("reason",), ""),
        (Retraction, {"target": REF, "reason": "legal", "note": "see https://x"}, ("note",), "URL"),
        (Retraction, {"target": REF, "reason": "legal", "note": "n" * 281}, ("note",), "1-280"),
        (Retraction, {"target": REF, "reason": "legal", "note": "a\x00b"}, ("note",), "control"),
        (Retraction, {"target": {**REF, "index": -1}, "reason": "legal"}, ("target", "index"), ""),
        (
            Retraction,
            {"target": {**REF, "leaf_hash": "ab"}, "reason": "legal"},
            ("target", "leaf_hash"),
            "64 hex",
        ),
        (Opinion, {"target": REF, "verdict": "meh"}, ("verdict",), ""),
        (
            Opinion,
            {"target": REF, "verdict": "false_positive", "comment": "mail me@x.org"},
            ("comment",),
            "e-mail",
        ),
        (Opinion, {"target": REF, "verdict": "false_positive", "comment": ""}, ("comment",), ""),
    ],
)
def test_bad_retraction_or_opinion_names_the_field(
    model: type[Retraction | Opinion], data: dict[str, Any], loc: tuple[Any, ...], words: str
) -> None:
    common = {"origin": "nca.example", "id": "x-1", "created": 1}
    with pytest.raises(ValidationError) as info:
        model.model_validate({**common, **data})
    error = info.value.errors()[0]
    assert error["loc"] == loc
    assert words in error["msg"]


def test_opinion_may_target_any_origin_and_retraction_its_own() -> None:
    ref = EntryRef(origin="nca.example", index=3, leaf_hash="AB" * 32)
    assert ref.leaf_hash == "ab" * 32
    Opinion(origin="platform.example", id="o1", created=1, target=ref, verdict="true_positive")
    Retraction(origin="nca.example", id="r1", created=1, target=ref, reason="duplicate")


def test_labels_are_sorted_and_models_frozen() -> None:
    assert LABELS.categories == (Category.CSAM_AI_GENERATED, Category.NCII_DEEPFAKE)
    assert LABELS.taxonomy == "hashfed-labels/v1"
    assert Severity.LOW.rank < Severity.CRITICAL.rank
    with pytest.raises(ValidationError):
        LABELS.severity = Severity.LOW  # type: ignore[misc]


def test_signed_entry_rejects_bad_signature_encoding() -> None:
    entry = sample_submission()
    for bad in ("", "abc", base64.b64encode(b"x" * 63).decode(), "A" * 85 + "B=="):
        with pytest.raises(ValidationError) as info:
            SignedEntry(entry=entry, signature=bad)
        assert info.value.errors()[0]["loc"] == ("signature",)
