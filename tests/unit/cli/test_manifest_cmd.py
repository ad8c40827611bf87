"""``hashfed manifest``: the steward flow end to end, draft rules, and one-line failures."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from federation.cli.manifest_cmd import write_manifest
from federation.core.keys import KeyType, SigningKey
from federation.core.manifest import (
    Manifest,
    Member,
    Role,
    SignedManifest,
    TransportKey,
    accept_update,
    parse_signed_manifest,
    sign_manifest,
    verify_manifest,
)
from federation.errors import VerificationError
from federation.keyfile import save_private_key
from tests.unit.cli.clirun import fails, ok, ok_json


def make_key(directory: Path, name: str, key_type: KeyType = KeyType.ED25519) -> SigningKey:
    """A key saved as NAME.key (0600) with its public form in NAME.pub."""
    key = SigningKey.generate(name, key_type)
    save_private_key(directory / f"{name}.key", key)
    (directory / f"{name}.pub").write_text(key.public.vkey() + "\n")
    return key


def transport(key_id: str) -> str:
    raw = SigningKey.generate(key_id).public.raw
    return f"{key_id}={base64.b64encode(raw).decode()}"


def member_args(member_id: str, log_key: SigningKey, *roles: str) -> list[str]:
    return [
        "--id",
        member_id,
        "--name",
        f"{member_id} org",
        "--roles",
        ",".join(roles),
        "--endpoint",
        f"https://{member_id}",
        "--log-vkey",
        log_key.public.vkey(),
        "--transport-key",
        transport(f"{member_id}-t1") + "@1000-2000",
    ]


def load(path: Path) -> Any:
    return parse_signed_manifest(path.read_bytes())


@pytest.fixture
def stewards(tmp_path: Path) -> list[SigningKey]:
    return [make_key(tmp_path, f"steward{i}") for i in range(3)]


@pytest.fixture
def genesis(tmp_path: Path, stewards: list[SigningKey]) -> Path:
    """A v1 draft with two members, built in-process (the flow test builds one via the CLI)."""
    members = [
        Member(
            id=member_id,
            name=f"{member_id} org",
            roles=(Role.SUBMITTER,),
            endpoint=f"https://{member_id}",
            log_origin=f"{member_id}/hashfed",
            log_vkey=SigningKey.generate(f"{member_id}/hashfed").public.vkey(),
            transport_keys=(
                TransportKey(
                    key_id=f"{member_id}-t1",
                    public_key=transport("x").split("=", 1)[1],
                    not_before=1000,
                ),
            ),
        )
        for member_id in ("police.example", "platform.example")
    ]
    manifest = Manifest(
        federation="demo",
        version=1,
        issued_at=1_700_000_000,
        members=tuple(members),
        stewards=tuple(k.public.vkey() for k in stewards),
        steward_quorum=2,
    )
    path = tmp_path / "v1.json"
    write_manifest(path, SignedManifest(manifest=manifest, signatures=()), overwrite=False)
    return path


def test_steward_flow(tmp_path: Path, stewards: list[SigningKey]) -> None:
    ok(
        "manifest",
        "new",
        "--federation",
        "demo",
        "--steward-key",
        "steward0.pub",
        "steward1.pub",
        "--steward-key",
        stewards[2].public.vkey(),
        "--quorum",
        "2",
        "--out",
        "v1.json",
        cwd=tmp_path,
    )
    police = SigningKey.generate("police.example/hashfed")
    (tmp_path / "police.pub").write_text(police.public.vkey() + "\n")
    platform = SigningKey.generate("platform.example/hashfed")
    police_args = member_args("police.example", police, "submitter")
    police_args[police_args.index("--log-vkey") + 1] = "police.pub"
    ok("manifest", "add-member", "v1.json", *police_args, cwd=tmp_path)
    ok(
        "manifest",
        "add-member",
        "v1.json",
        *member_args("platform.example", platform, "consumer", "submitter"),
        cwd=tmp_path,
    )
    genesis = tmp_path / "v1.json"
    draft = load(genesis)
    assert draft.signatures == ()
    assert draft.manifest.version == 1
    assert [m.id for m in draft.manifest.members] == ["police.example", "platform.example"]
    key = draft.manifest.members[0].transport_keys[0]
    assert (key.not_before, key.not_after) == (1000, 2000)
    assert draft.manifest.members[0].log_origin == "police.example/hashfed"

    ok("manifest", "sign", genesis, "--key", "steward0.key", cwd=tmp_path)
    assert "[manifest_quorum_not_met]" in fails(1, "manifest", "verify", genesis, cwd=tmp_path)
    ok("manifest", "sign", genesis, "--key", "steward2.key", cwd=tmp_path)
    verify_manifest(load(genesis))
    summary = ok_json("manifest", "verify", genesis, "--json", cwd=tmp_path)
    assert summary["verified"] is True
    assert (summary["federation"], summary["version"]) == ("demo", 1)
    assert (summary["steward_signatures"], summary["quorum"]) == (2, 2)
    assert summary["verified_against"] == "self"
    assert [(m["id"], m["roles"], m["status"]) for m in summary["members"]] == [
        ("police.example", ["submitter"], "active"),
        ("platform.example", ["consumer", "submitter"], "active"),
    ]

    # Next version: new stewards, signed by them alone -> not an acceptable update.
    new = [make_key(tmp_path, f"new{i}") for i in range(2)]
    ok(
        "manifest",
        "set-stewards",
        genesis,
        "--out",
        "v2.json",
        "--steward-key",
        "new0.pub",
        "new1.pub",
        "--quorum",
        "1",
        cwd=tmp_path,
    )
    ok("manifest", "suspend", "v2.json", "--id", "platform.example", "--at", "5000", cwd=tmp_path)
    v2 = tmp_path / "v2.json"
    ok("manifest", "sign", v2, "--key", "new0.key", cwd=tmp_path)
    line = fails(1, "manifest", "verify", v2, "--previous", genesis, cwd=tmp_path)
    assert "[manifest_quorum_not_met]" in line
    verify_manifest(load(v2))  # valid for its own (new) stewards, yet not an update of v1
    assert len(new) == 2
    with pytest.raises(VerificationError):
        accept_update(load(genesis), load(v2))

    # Two of the old stewards sign too -> accepted.
    ok("manifest", "sign", v2, "--key", "steward1.key", cwd=tmp_path)
    ok("manifest", "sign", v2, "--key", "steward2.key", cwd=tmp_path)
    accept_update(load(genesis), load(v2))
    text = ok("manifest", "verify", v2, "--previous", genesis, cwd=tmp_path).stdout
    assert "the stewards of version 1" in text
    assert "version:    2" in text
    row = next(line for line in text.splitlines() if line.startswith("platform.example"))
    assert row.split()[-2:] == ["suspended", "https://platform.example"]
    assert load(v2).manifest.members[1].suspended_at == 5000


def sign_in_place(path: Path, *keys: SigningKey) -> None:
    signed = sign_manifest(load(path).manifest, keys)
    write_manifest(path, signed, overwrite=True)


def test_editing_signed_manifest_needs_out_and_bumps_version(
    tmp_path: Path, stewards: list[SigningKey], genesis: Path
) -> None:
    sign_in_place(genesis, stewards[0])
    before = genesis.read_bytes()
    line = fails(2, "manifest", "set-policy", genesis, "--pdq-threshold", "20", cwd=tmp_path)
    assert "[manifest_is_signed]" in line
    assert genesis.read_bytes() == before
    ok(
        "manifest",
        "set-policy",
        genesis,
        "--out",
        "v2.json",
        "--pdq-threshold",
        "20",
        "--witness-quorum",
        "0",
        cwd=tmp_path,
    )
    v2 = load(tmp_path / "v2.json")
    assert (v2.manifest.version, v2.signatures) == (2, ())
    assert v2.manifest.policy.pdq_threshold == 20
    assert v2.manifest.issued_at >= load(genesis).manifest.issued_at
    # A draft is edited in place and keeps its version.
    ok("manifest", "set-policy", "v2.json", "--min-quality", "70", cwd=tmp_path)
    again = load(tmp_path / "v2.json")
    assert (again.manifest.version, again.manifest.policy.min_pdq_quality) == (2, 70)
    assert again.manifest.policy.pdq_threshold == 20


def test_bad_input_is_exit_2_and_changes_nothing(tmp_path: Path, genesis: Path) -> None:
    before = genesis.read_bytes()
    other = SigningKey.generate("other.example/hashfed")
    # duplicate member id
    line = fails(
        2,
        "manifest",
        "add-member",
        genesis,
        *member_args("police.example", other, "consumer"),
        cwd=tmp_path,
    )
    assert "[invalid_manifest]" in line
    assert "appears more than once" in line
    # log vkey named differently from the origin
    args = member_args("x.example", other, "consumer")
    line = fails(
        2, "manifest", "add-member", genesis, *args, "--log-origin", "x.example/hf", cwd=tmp_path
    )
    assert "log_vkey" in line
    assert "[unknown_member]" in fails(
        2, "manifest", "suspend", genesis, "--id", "nobody", cwd=tmp_path
    )
    assert genesis.read_bytes() == before
    line = fails(
        2,
        "manifest",
        "new",
        "--federation",
        "Demo!",
        "--steward-key",
        "steward0.pub",
        "--quorum",
        "1",
        "--out",
        "bad.json",
        cwd=tmp_path,
    )
    assert "federation" in line
    assert not (tmp_path / "bad.json").exists()
    assert "exists" in fails(
        2,
        "manifest",
        "new",
        "--federation",
        "demo",
        "--steward-key",
        "steward0.pub",
        "--quorum",
        "1",
        "--out",
        genesis,
        cwd=tmp_path,
    )


def test_tampered_and_malformed_files(
    tmp_path: Path, stewards: list[SigningKey], genesis: Path
) -> None:
    sign_in_place(genesis, *stewards[:2])
    verify_manifest(load(genesis))
    data = json.loads(genesis.read_text())
    data["manifest"]["members"][0]["name"] = "someone else"
    (tmp_path / "tampered.json").write_text(json.dumps(data))
    line = fails(1, "manifest", "verify", "tampered.json", cwd=tmp_path)
    assert "[manifest_bad_signature]" in line
    (tmp_path / "junk.json").write_text('{"manifest": {}}')
    assert "[invalid_manifest]" in fails(2, "manifest", "verify", "junk.json", cwd=tmp_path)


def test_show_summarises_a_draft(tmp_path: Path, genesis: Path) -> None:
    info = ok_json("manifest", "show", genesis, "--json", cwd=tmp_path)
    assert (info["verified"], info["signatures"], len(info["members"])) == (False, 0, 2)
    # a cosignature key cannot sign manifests
    cosigner = make_key(tmp_path, "cos", KeyType.COSIGNATURE_V1)
    assert cosigner.key_type == KeyType.COSIGNATURE_V1
    assert "[invalid_key]" in fails(
        2, "manifest", "sign", genesis, "--key", "cos.key", cwd=tmp_path
    )


def test_suspend_at_a_log_size(tmp_path: Path, stewards: list[SigningKey], genesis: Path) -> None:
    """By time at once, then by the witnessed size; the update rule holds at every step."""
    # by size alone: no suspended_at, so late entries below the size stay valid
    ok("manifest", "suspend", genesis, "--id", "police.example", "--at-size", "7", cwd=tmp_path)
    police = load(genesis).manifest.members[0]
    assert (police.status, police.suspended_at, police.suspended_size) == ("suspended", None, 7)
    ok("manifest", "suspend", genesis, "--id", "police.example", "--at", "5000", cwd=tmp_path)
    assert load(genesis).manifest.members[0].suspended_at == 5000

    # by time first (as the first version after a compromise would), signed
    ok("manifest", "suspend", genesis, "--id", "platform.example", "--at", "6000", cwd=tmp_path)
    sign_in_place(genesis, *stewards[:2])
    # the next version adds the vouched size to platform's suspension
    ok(
        "manifest",
        "suspend",
        genesis,
        "--out",
        "v2.json",
        "--id",
        "platform.example",
        "--at-size",
        "12",
        cwd=tmp_path,
    )
    v2 = tmp_path / "v2.json"
    platform = load(v2).manifest.members[1]
    assert (platform.suspended_at, platform.suspended_size) == (6000, 12)
    before = v2.read_bytes()
    line = fails(
        2, "manifest", "suspend", v2, "--id", "police.example", "--at-size", "8", cwd=tmp_path
    )
    assert "[manifest_suspension_weakened]" in line
    assert "not raise it to 8" in line
    assert "already suspended at 5000" in fails(
        2, "manifest", "suspend", v2, "--id", "police.example", "--at", "4000", cwd=tmp_path
    )
    assert "already suspended" in fails(
        2, "manifest", "suspend", v2, "--id", "police.example", cwd=tmp_path
    )
    assert "[invalid_manifest]" in fails(
        2, "manifest", "suspend", v2, "--id", "police.example", "--at-size", "-1", cwd=tmp_path
    )
    assert v2.read_bytes() == before
    ok("manifest", "suspend", v2, "--id", "police.example", "--at-size", "6", cwd=tmp_path)
    sign_in_place(v2, *stewards[:2])
    accept_update(load(genesis), load(v2))

    info = ok_json("manifest", "verify", v2, "--previous", genesis, "--json", cwd=tmp_path)
    assert [(m["id"], m.get("suspended_at"), m.get("suspended_size")) for m in info["members"]] == [
        ("police.example", 5000, 6),
        ("platform.example", 6000, 12),
    ]
    text = ok("manifest", "show", v2, cwd=tmp_path).stdout
    assert "entries at log index >= 12" in text
    assert "entries created at or after 1970-01-01T01:40:00Z (6000)" in text

    # an edit by hand that raises the size is refused by the update rule
    data = json.loads(v2.read_text())
    data["manifest"]["members"][1]["suspended_size"] = 13
    data["manifest"]["version"] = 3
    (tmp_path / "v3.json").write_text(json.dumps(data))
    sign_in_place(tmp_path / "v3.json", *stewards[:2])
    line = fails(1, "manifest", "verify", "v3.json", "--previous", v2, cwd=tmp_path)
    assert "[manifest_suspension_weakened]" in line
