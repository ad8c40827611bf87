"""Manifest: known answers, round trips, model consistency, signatures and the update rule.

Regenerate spec/vectors/manifest.json after a deliberate wire change with
``HASHFED_WRITE_VECTORS=1 .venv/bin/pytest tests/unit/core/test_manifest.py``.
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
from federation.core.keys import DOMAIN_MANIFEST, KeyType, PublicKey, SigningKey
from federation.core.manifest import (
    Manifest,
    ManifestSignature,
    Member,
    Policy,
    SignedManifest,
    accept_update,
    add_manifest_signature,
    manifest_hash,
    manifest_json,
    manifest_payload,
    parse_signed_manifest,
    sign_manifest,
    signed_manifest_json,
    verify_manifest,
)
from federation.errors import InputError, VerificationError

REPO = Path(__file__).resolve().parents[3]
VECTORS = REPO / "spec" / "vectors" / "manifest.json"


def seeded(label: str, name: str, key_type: KeyType = KeyType.ED25519) -> SigningKey:
    return SigningKey.from_seed(name, hashlib.sha256(label.encode()).digest(), key_type)


STEWARDS = [seeded(f"hashfed test vector: steward {i}", f"steward-{i}") for i in range(4)]
NEW_STEWARDS = [
    seeded(f"hashfed test vector: new steward {i}", f"new-steward-{i}") for i in range(3)
]
NCA_LOG = seeded("hashfed test vector: nca.example log key", "nca.example/hashfed")
NCA_HTTP = seeded("hashfed test vector: nca.example transport key", "nca-2024")
AUDIT_LOG = seeded("hashfed test vector: audit.example log key", "audit.example/hashfed")
AUDIT_WITNESS = seeded(
    "hashfed test vector: audit.example witness key", "audit.example", KeyType.COSIGNATURE_V1
)
AUDIT_HTTP = seeded("hashfed test vector: audit.example transport key", "audit-1")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def member_nca(**changes: Any) -> dict[str, Any]:
    member: dict[str, Any] = {
        "id": "nca.example",
        "name": "National Crime Agency (example)",
        "roles": ["submitter", "consumer"],
        "endpoint": "https://hashfed.nca.example",
        "log_origin": "nca.example/hashfed",
        "log_vkey": NCA_LOG.public.vkey(),
        "transport_keys": [
            {
                "key_id": "nca-2023",
                "public_key": b64(STEWARDS[3].public.raw),
                "not_before": 1_672_531_200,
                "not_after": 1_704_067_200,
            },
            {
                "key_id": "nca-2024",
                "public_key": b64(NCA_HTTP.public.raw),
                "not_before": 1_704_067_200,
            },
        ],
    }
    member.update(changes)
    return member


def member_audit(**changes: Any) -> dict[str, Any]:
    member: dict[str, Any] = {
        "id": "audit.example",
        "name": "Audit Co",
        "roles": ["witness", "auditor"],
        "endpoint": "http://127.0.0.1:8443/",
        "log_origin": "audit.example/hashfed",
        "log_vkey": AUDIT_LOG.public.vkey(),
        "witness_vkey": AUDIT_WITNESS.public.vkey(),
        "transport_keys": [
            {"key_id": "audit-1", "public_key": b64(AUDIT_HTTP.public.raw), "not_before": 0}
        ],
        "status": "suspended",
        "suspended_at": 1_710_000_000,
    }
    member.update(changes)
    return member


def manifest_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "federation": "demo.hashfed",
        "version": 1,
        "issued_at": 1_700_000_000,
        "members": [member_nca(), member_audit()],
        "policy": {"pdq_threshold": 31, "min_pdq_quality": 50, "witness_quorum": 1},
        "stewards": [k.public.vkey() for k in STEWARDS[:3]],
        "steward_quorum": 2,
    }
    data.update(changes)
    return data


GENESIS = Manifest.model_validate(manifest_data())
SIGNED_GENESIS = sign_manifest(GENESIS, STEWARDS[:2])


def next_version(**changes: Any) -> Manifest:
    fields = {"version": 2, "issued_at": 1_700_100_000, **changes}
    return Manifest.model_validate(manifest_data(**fields))


# -- known answers ---------------------------------------------------------------------------


def build_vectors() -> dict[str, Any]:
    update = next_version(stewards=[k.public.vkey() for k in NEW_STEWARDS], steward_quorum=2)
    signed_update = sign_manifest(update, [STEWARDS[2], STEWARDS[0]])
    by_size = next_version(
        members=[
            member_nca(status="suspended", suspended_size=1000),
            member_audit(suspended_size=40),
        ]
    )
    signed_by_size = sign_manifest(by_size, [STEWARDS[1], STEWARDS[2]])
    return {
        "description": (
            "hashfed/v1 manifest known answers (spec/entries.md). Each signature is "
            "Ed25519(steward seed, 'hashfed/v1/manifest\\n' || payload) with payload = RFC 8785 "
            "of the manifest; manifest_hash = SHA-256(payload). 'update' replaces the steward "
            "set and is signed by 2 of the 3 stewards of 'genesis'. 'suspension_by_size' is "
            "another valid update of 'genesis': it suspends nca.example at log size 1000 alone "
            "and adds log size 40 to the time suspension of audit.example."
        ),
        "domain": DOMAIN_MANIFEST.decode(),
        "steward_seeds": {k.name: k.seed.hex() for k in [*STEWARDS, *NEW_STEWARDS]},
        "cases": [
            {
                "name": name,
                "signed_manifest": signed_manifest_json(signed),
                "payload_hex": manifest_payload(signed.manifest).hex(),
                "manifest_hash": manifest_hash(signed.manifest),
            }
            for name, signed in (
                ("genesis", SIGNED_GENESIS),
                ("update", signed_update),
                ("suspension_by_size", signed_by_size),
            )
        ],
    }


def test_vectors_file_matches_generator() -> None:
    expected = build_vectors()
    text = json.dumps(expected, indent=2, ensure_ascii=False) + "\n"
    if os.environ.get("HASHFED_WRITE_VECTORS"):
        VECTORS.write_text(text, encoding="utf-8")
    assert json.loads(VECTORS.read_text(encoding="utf-8")) == expected


def test_vectors_verify_independently() -> None:
    doc = json.loads(VECTORS.read_text(encoding="utf-8"))
    seeds = {name: bytes.fromhex(seed) for name, seed in doc["steward_seeds"].items()}
    publics = {}
    for name, seed in seeds.items():
        pub = SigningKey.from_seed(name, seed).public
        publics[pub.key_id.hex()] = pub
    cases = {c["name"]: c for c in doc["cases"]}
    for case in cases.values():
        manifest = case["signed_manifest"]["manifest"]
        payload = bytes.fromhex(case["payload_hex"])
        assert payload == rfc8785.dumps(manifest)
        assert hashlib.sha256(payload).hexdigest() == case["manifest_hash"]
        for sig in case["signed_manifest"]["signatures"]:
            publics[sig["key_id"]].verify(
                DOMAIN_MANIFEST + payload, base64.b64decode(sig["signature"])
            )
    genesis = parse_signed_manifest(json.dumps(cases["genesis"]["signed_manifest"]).encode())
    update = parse_signed_manifest(json.dumps(cases["update"]["signed_manifest"]).encode())
    verify_manifest(genesis)
    accept_update(genesis, update)
    by_size = parse_signed_manifest(
        json.dumps(cases["suspension_by_size"]["signed_manifest"]).encode()
    )
    accept_update(genesis, by_size)
    members = cases["suspension_by_size"]["signed_manifest"]["manifest"]["members"]
    assert [m.get("suspended_size") for m in members] == [1000, 40]


# -- models ----------------------------------------------------------------------------------


def test_lookups_and_validity_windows() -> None:
    m = GENESIS
    nca = m.member("nca.example")
    assert nca is not None
    assert m.member("nobody.example") is None
    assert m.member_by_origin("audit.example/hashfed") == m.member("audit.example")
    assert m.member_by_origin("nca.example") is None
    assert nca.roles == ("consumer", "submitter")  # stored sorted
    assert nca.log_key().name == "nca.example/hashfed"
    assert m.member("audit.example").witness_key().key_type == KeyType.COSIGNATURE_V1  # type: ignore[union-attr]

    found = m.transport_key("nca-2024", 1_704_067_200)
    assert found is not None
    assert found[0] == nca
    assert found[1].raw == NCA_HTTP.public.raw
    assert m.transport_key("nca-2024", 1_704_067_199) is None  # not yet valid
    assert m.transport_key("nca-2023", 1_704_067_199) is not None
    assert m.transport_key("nca-2023", 1_704_067_200) is None  # not_after is exclusive
    assert m.transport_key("unknown", 1_704_067_200) is None

    assert m.is_active("nca.example", 2_000_000_000)
    assert m.is_active("audit.example", 1_709_999_999)
    assert not m.is_active("audit.example", 1_710_000_000)
    assert not m.is_active("nobody.example", 0)


def test_suspension_rules_for_entries_and_for_acting() -> None:
    """By time: entries created at or after suspended_at; by size: entries at index >= it,
    whatever their created (what a thief holding the log key cannot back-date)."""
    by_time = Member.model_validate(member_audit())  # suspended_at 1_710_000_000
    by_size = Member.model_validate(member_audit(suspended_at=None, suspended_size=5))
    both = Member.model_validate(member_audit(suspended_size=5))
    active = Member.model_validate(member_nca())
    early, late = 1_709_999_999, 1_710_000_000

    assert active.entry_refusal(10**6, 2**40) is None
    assert by_time.entry_refusal(10**6, early) is None
    assert "at or after the suspension at 1710000000" in (by_time.entry_refusal(0, late) or "")

    assert by_size.entry_refusal(4, 2**40) is None  # below the size: valid even if created late
    assert by_size.entry_refusal(5, 0) == "index 5 is at or beyond the suspension at log size 5"
    assert by_size.entry_refusal(6, early) is not None  # back-dated: still refused

    assert both.entry_refusal(4, early) is None
    assert both.entry_refusal(4, late) is not None  # both rules apply
    assert both.entry_refusal(5, early) is not None

    # Acting (requests, witnessing): a suspension by size alone takes effect at once.
    assert active.active_at(2**40)
    assert by_time.active_at(early)
    assert not by_time.active_at(late)
    assert not by_size.active_at(0)
    assert both.active_at(early)
    assert not both.active_at(late)
    m = Manifest.model_validate(
        manifest_data(members=[member_nca(), member_audit(suspended_at=None, suspended_size=0)])
    )
    assert not m.is_active("audit.example", 0)


@settings(max_examples=40, deadline=None)
@given(
    version=st.integers(1, 2**53 - 1),
    issued_at=st.integers(0, 2**53 - 1),
    threshold=st.integers(0, 63),
    quality=st.integers(0, 100),
    quarantine=st.integers(0, 1000),
    quorum=st.integers(1, 3),
    drop_audit=st.booleans(),
    suspension=st.sampled_from(["time", "size", "both"]),
    size=st.integers(0, 2**53 - 1),
)
def test_manifest_round_trip(
    version: int,
    issued_at: int,
    threshold: int,
    quality: int,
    quarantine: int,
    quorum: int,
    drop_audit: bool,
    suspension: str,
    size: int,
) -> None:
    nca = member_nca(
        status="suspended",
        **({"suspended_at": issued_at} if suspension != "size" else {}),
        **({"suspended_size": size} if suspension != "time" else {}),
    )
    members = [nca] if drop_audit else [nca, member_audit(status="active", suspended_at=None)]
    m = Manifest.model_validate(
        manifest_data(
            version=version,
            issued_at=issued_at,
            members=members,
            policy={
                "pdq_threshold": threshold,
                "min_pdq_quality": quality,
                "quarantine_false_positives": quarantine,
            },
            steward_quorum=quorum,
        )
    )
    assert Manifest.model_validate(manifest_json(m)) == m
    signed = sign_manifest(m, STEWARDS[:quorum])
    verify_manifest(signed)
    text = json.dumps(signed_manifest_json(signed), indent=1).encode()
    back = parse_signed_manifest(text)
    assert back == signed
    verify_manifest(back)
    assert canonical_json(signed_manifest_json(back)) == canonical_json(
        signed_manifest_json(signed)
    )


def test_policy_defaults() -> None:
    assert Policy() == Policy(
        pdq_threshold=31, min_pdq_quality=50, witness_quorum=0, quarantine_false_positives=0
    )


@pytest.mark.parametrize(
    ("changes", "loc", "words"),
    [
        ({"federation": "Demo"}, ("federation",), "federation name"),
        ({"version": 0}, ("version",), "greater than or equal"),
        ({"version": True}, ("version",), "integer"),
        ({"issued_at": 1.5}, ("issued_at",), "integer"),
        ({"members": [member_nca(), member_nca()]}, ("members",), "member id"),
        (
            {"members": [member_nca(), member_audit(log_origin="nca.example/hashfed")]},
            ("members", 1, "log_vkey"),
            "must equal log_origin",
        ),
        (
            {"members": [member_nca(), member_nca(id="other.example")]},
            ("members",),
            "log origin",
        ),
        ({"members": [member_nca(id="NCA")]}, ("members", 0, "id"), "lowercase"),
        ({"members": [member_nca(roles=[])]}, ("members", 0, "roles"), "at least one"),
        ({"members": [member_nca(roles=["admin"])]}, ("members", 0, "roles", 0), ""),
        ({"members": [member_nca(endpoint="ftp://x")]}, ("members", 0, "endpoint"), "http(s)"),
        (
            {"members": [member_nca(endpoint="https://u:p@x.example")]},
            ("members", 0, "endpoint"),
            "credentials",
        ),
        (
            {"members": [member_nca(log_vkey=STEWARDS[0].public.vkey())]},
            ("members", 0, "log_vkey"),
            "must equal log_origin",
        ),
        (
            {"members": [member_nca(log_vkey="garbage")]},
            ("members", 0, "log_vkey"),
            "name+hex8+base64",
        ),
        (
            {
                "members": [
                    member_nca(log_vkey=NCA_LOG.with_type(KeyType.COSIGNATURE_V1).public.vkey())
                ]
            },
            ("members", 0, "log_vkey"),
            "type 0x01",
        ),
        (
            {"members": [member_audit(witness_vkey=None)]},
            ("members", 0, "witness_vkey"),
            "witness role",
        ),
        (
            {"members": [member_audit(witness_vkey=AUDIT_LOG.public.vkey())]},
            ("members", 0, "witness_vkey"),
            "type 0x04",
        ),
        (
            {"members": [member_audit(suspended_at=None)]},
            ("members", 0, "suspended_size"),
            "needs suspended_at, suspended_size or both",
        ),
        (
            {"members": [member_audit(status="active", suspended_at=None, suspended_size=3)]},
            ("members", 0, "suspended_size"),
            "active member must not have suspended_size",
        ),
        (
            {"members": [member_audit(suspended_size=-1)]},
            ("members", 0, "suspended_size"),
            "greater than or equal",
        ),
        (
            {"members": [member_audit(suspended_size=True)]},
            ("members", 0, "suspended_size"),
            "integer",
        ),
        (
            {"members": [member_audit(suspended_size="3")]},
            ("members", 0, "suspended_size"),
            "integer",
        ),
        (
            {"members": [member_audit(status="active")]},
            ("members", 0, "suspended_at"),
            "must not have",
        ),
        (
            {
                "members": [
                    member_nca(
                        transport_keys=[
                            {
                                "key_id": "k1",
                                "public_key": b64(b"x" * 32),
                                "not_before": 5,
                                "not_after": 5,
                            }
                        ]
                    )
                ]
            },
            ("members", 0, "transport_keys", 0, "not_after"),
            "later than",
        ),
        (
            {
                "members": [
                    member_nca(
                        transport_keys=[
                            {"key_id": "k 1", "public_key": b64(b"x" * 32), "not_before": 0}
                        ]
                    )
                ]
            },
            ("members", 0, "transport_keys", 0, "key_id"),
            "key id",
        ),
        (
            {
                "members": [
                    member_nca(
                        transport_keys=[
                            {"key_id": "k1", "public_key": b64(b"x" * 31), "not_before": 0}
                        ]
                    )
                ]
            },
            ("members", 0, "transport_keys", 0, "public_key"),
            "32 bytes",
        ),
        (
            {
                "members": [
                    member_nca(),
                    member_audit(transport_keys=member_nca()["transport_keys"]),
                ]
            },
            ("members",),
            "transport key id",
        ),
        ({"policy": {"pdq_threshold": 64}}, ("policy", "pdq_threshold"), "less than"),
        ({"policy": {"min_pdq_quality": 101}}, ("policy", "min_pdq_quality"), ""),
        ({"policy": {"witness_quorum": 2}}, ("policy",), "witness members"),
        ({"policy": {"extra": 1}}, ("policy", "extra"), "Extra"),
        ({"stewards": []}, ("stewards",), "at least one"),
        (
            {"stewards": [STEWARDS[0].public.vkey()] * 2, "steward_quorum": 1},
            ("stewards",),
            "unique",
        ),
        ({"steward_quorum": 4}, ("steward_quorum",), "exceeds"),
        ({"steward_quorum": 0}, ("steward_quorum",), "greater than or equal"),
    ],
)
def test_bad_manifest_names_the_field(
    changes: dict[str, Any], loc: tuple[Any, ...], words: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Manifest.model_validate(manifest_data(**changes))
    error = info.value.errors()[0]
    assert error["loc"] == loc
    assert words in error["msg"]


def test_parse_signed_manifest_reports_field_and_json_errors() -> None:
    doc = signed_manifest_json(SIGNED_GENESIS)
    doc["manifest"]["version"] = 0
    with pytest.raises(InputError) as info:
        parse_signed_manifest(json.dumps(doc).encode())
    assert info.value.code == "invalid_manifest"
    assert info.value.field == "manifest.version"
    with pytest.raises(InputError) as info:
        parse_signed_manifest(b'{"manifest": 1.5}')
    assert info.value.code == "non_canonical_json"


# -- signatures and the update rule ----------------------------------------------------------


def test_genesis_needs_its_own_quorum() -> None:
    verify_manifest(SIGNED_GENESIS)
    one = sign_manifest(GENESIS, STEWARDS[:1])
    with pytest.raises(VerificationError) as info:
        verify_manifest(one)
    assert info.value.code == "manifest_quorum_not_met"
    assert (
        add_manifest_signature(one, STEWARDS[2]).signatures
        == sign_manifest(GENESIS, [STEWARDS[2], STEWARDS[0]]).signatures
    )
    verify_manifest(add_manifest_signature(one, STEWARDS[2]))


def test_non_steward_signatures_do_not_count() -> None:
    signed = sign_manifest(GENESIS, [STEWARDS[0], STEWARDS[3], NEW_STEWARDS[0]])
    with pytest.raises(VerificationError) as info:
        verify_manifest(signed)
    assert info.value.code == "manifest_quorum_not_met"


def test_tampered_manifest_fails() -> None:
    tampered = GENESIS.model_copy(update={"steward_quorum": 1})
    forged = SignedManifest(manifest=tampered, signatures=SIGNED_GENESIS.signatures)
    with pytest.raises(VerificationError) as info:
        verify_manifest(forged)
    assert info.value.code == "manifest_bad_signature"


def test_signature_is_domain_separated() -> None:
    payload = manifest_payload(GENESIS)
    sigs = [
        ManifestSignature(key_id=k.public.key_id.hex(), signature=b64(k.sign(payload)))
        for k in STEWARDS[:3]
    ]
    with pytest.raises(VerificationError, match="does not verify"):
        verify_manifest(SignedManifest(manifest=GENESIS, signatures=tuple(sigs)))


def test_update_signed_by_previous_quorum_is_accepted() -> None:
    update = next_version(stewards=[k.public.vkey() for k in NEW_STEWARDS])
    accept_update(SIGNED_GENESIS, sign_manifest(update, STEWARDS[1:3]))
    # The version after that must be signed by the *new* stewards.
    third = Manifest.model_validate(
        {**manifest_json(update), "version": 7, "issued_at": 1_700_200_000}
    )
    accept_update(sign_manifest(update, STEWARDS[1:3]), sign_manifest(third, NEW_STEWARDS[:2]))
    with pytest.raises(VerificationError) as info:
        accept_update(sign_manifest(update, STEWARDS[1:3]), sign_manifest(third, STEWARDS[:3]))
    assert info.value.code == "manifest_quorum_not_met"


def _dup(signed: SignedManifest) -> SignedManifest:
    return SignedManifest(manifest=signed.manifest, signatures=signed.signatures * 2)


@pytest.mark.parametrize(
    ("build", "code"),
    [
        (
            lambda: sign_manifest(next_version(version=1), STEWARDS[:2]),
            "manifest_version_not_newer",
        ),
        (lambda: sign_manifest(GENESIS, STEWARDS[:3]), "manifest_version_not_newer"),
        (
            lambda: sign_manifest(
                next_version(stewards=[k.public.vkey() for k in NEW_STEWARDS]), NEW_STEWARDS
            ),
            "manifest_quorum_not_met",
        ),
        (lambda: sign_manifest(next_version(), STEWARDS[:1]), "manifest_quorum_not_met"),
        (lambda: sign_manifest(next_version(), []), "manifest_quorum_not_met"),
        (lambda: _dup(sign_manifest(next_version(), STEWARDS[:1])), "manifest_quorum_not_met"),
        (
            lambda: sign_manifest(next_version(federation="other.hashfed"), STEWARDS[:3]),
            "manifest_federation_mismatch",
        ),
        (
            lambda: sign_manifest(next_version(issued_at=1_699_999_999), STEWARDS[:3]),
            "manifest_issued_before_previous",
        ),
        (
            lambda: sign_manifest(
                next_version(
                    members=[
                        member_nca(
                            log_vkey=seeded("nca rotated", "nca.example/hashfed").public.vkey()
                        ),
                        member_audit(),
                    ]
                ),
                STEWARDS[:3],
            ),
            "manifest_log_identity_changed",
        ),
        (
            lambda: sign_manifest(
                next_version(
                    members=[
                        member_nca(
                            log_origin="nca.example/other",
                            log_vkey=seeded("nca other", "nca.example/other").public.vkey(),
                        ),
                        member_audit(),
                    ]
                ),
                STEWARDS[:3],
            ),
            "manifest_log_identity_changed",
        ),
    ],
)
def test_update_rule_rejections(build: Any, code: str) -> None:
    with pytest.raises(VerificationError) as info:
        accept_update(SIGNED_GENESIS, build())
    assert info.value.code == code


SIZED = Manifest.model_validate(
    manifest_data(members=[member_nca(), member_audit(suspended_size=40)])
)
SIGNED_SIZED = sign_manifest(SIZED, STEWARDS[:2])


def sized_update(**audit: Any) -> SignedManifest:
    """Version 2 of SIZED with audit.example changed, signed by the stewards in force."""
    if audit.get("removed"):
        version = next_version(members=[member_nca()], policy={"witness_quorum": 0})
    else:
        version = next_version(members=[member_nca(), member_audit(**audit)])
    return sign_manifest(version, STEWARDS[:2])


@pytest.mark.parametrize(
    "audit",
    [
        {"suspended_size": 41},  # raised: entries 40 a thief appended would be applied
        {"suspended_size": None},  # dropped, suspended_at kept
        {"status": "active", "suspended_at": None},  # reinstated
        {"removed": True},  # removed (and could be re-added later without it)
    ],
)
def test_update_may_not_raise_or_drop_a_suspended_size(audit: dict[str, Any]) -> None:
    with pytest.raises(VerificationError) as info:
        accept_update(SIGNED_SIZED, sized_update(**audit))
    assert info.value.code == "manifest_suspension_weakened"
    assert "audit.example" in info.value.message


@pytest.mark.parametrize(
    "audit",
    [
        {"suspended_size": 40},  # unchanged
        {"suspended_size": 39},  # lowered: refuses more
        {"suspended_size": 0},
        {"suspended_size": 40, "suspended_at": 1_700_000_000},  # an earlier time too
        {"suspended_size": 40, "suspended_at": None},  # the time rule may go, the size stays
    ],
)
def test_update_may_keep_or_lower_a_suspended_size(audit: dict[str, Any]) -> None:
    accept_update(SIGNED_SIZED, sized_update(**audit))


def test_a_time_suspension_may_gain_a_size() -> None:
    """The usual course: suspend by time at once, then vouch for a witnessed size."""
    accept_update(SIGNED_GENESIS, sized_update(suspended_size=40))


def test_lower_version_is_refused() -> None:
    v5 = sign_manifest(next_version(version=5), STEWARDS[:2])
    v3 = sign_manifest(next_version(version=3), STEWARDS[:2])
    accept_update(v5, sign_manifest(next_version(version=6), STEWARDS[:2]))
    with pytest.raises(VerificationError) as info:
        accept_update(v5, v3)
    assert info.value.code == "manifest_version_not_newer"


def test_duplicate_signatures_count_once() -> None:
    signed = _dup(sign_manifest(GENESIS, STEWARDS[:1]))
    assert len(signed.signatures) == 2
    with pytest.raises(VerificationError) as info:
        verify_manifest(signed)
    assert info.value.code == "manifest_quorum_not_met"
    assert len(add_manifest_signature(signed, STEWARDS[0]).signatures) == 1


def test_transport_key_public_matches() -> None:
    found = GENESIS.transport_key("audit-1", 10)
    assert found is not None
    member, key = found
    assert member.status == "suspended"
    assert isinstance(key, PublicKey)
    key.verify(b"m", AUDIT_HTTP.sign(b"m"))
