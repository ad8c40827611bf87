"""``hashfed verify-receipt``: receipts built from core pieces, verified offline by the CLI."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from federation.cli.manifest_cmd import write_manifest
from federation.core.checkpoint import Checkpoint, sign_checkpoint
from federation.core.entries import (
    EntryRef,
    Retraction,
    Submission,
    entry_leaf_hash,
    leaf_bytes,
    leaf_hash,
    sign_entry,
)
from federation.core.keys import SigningKey
from federation.core.labels import Category, ConfirmedBy, Labels, Severity
from federation.core.manifest import Manifest, Member, Role, SignedManifest, TransportKey
from federation.core.receipt import TlogProof, verify_receipt
from federation.core.signals import PdqSignal
from federation.core.tlog import MemoryHashStore
from tests.unit.cli.clirun import fails, ok, ok_json

ORIGIN = "police.example/hashfed"
LOG_KEY = SigningKey.from_seed(ORIGIN, hashlib.sha256(b"hashfed cli receipt test").digest())
PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
LABELS = Labels(
    categories=(Category.CSAM,), severity=Severity.HIGH, confirmed_by=ConfirmedBy.POLICE
)


def build_receipts(key: SigningKey = LOG_KEY) -> list[str]:
    """Five submissions and a retraction of the third in one log; one receipt per entry."""
    signed = [
        sign_entry(
            Submission(
                origin="police.example",
                id=f"sub-{i}",
                created=1_700_000_000 + i,
                signal=PdqSignal(value=PDQ[i:] + PDQ[:i], quality=90),
                labels=LABELS,
            ),
            key,
        )
        for i in range(5)
    ]
    target = EntryRef(origin="police.example", index=2, leaf_hash=entry_leaf_hash(signed[2]).hex())
    signed.append(
        sign_entry(
            Retraction(
                origin="police.example",
                id="ret-1",
                created=1_700_000_100,
                target=target,
                reason="false-positive",
            ),
            key,
        )
    )
    store = MemoryHashStore()
    leaves = [leaf_bytes(s) for s in signed]
    for leaf in leaves:
        store.append(leaf_hash(leaf))
    note = sign_checkpoint(Checkpoint(ORIGIN, store.size, store.root()), key)
    return [
        TlogProof(i, tuple(store.inclusion_proof(i)), note.serialise(), leaf).serialise()
        for i, leaf in enumerate(leaves)
    ]


RECEIPTS = build_receipts()


@pytest.fixture
def receipt(tmp_path: Path) -> Path:
    path = tmp_path / "receipt.txt"
    path.write_text(RECEIPTS[3])
    verify_receipt(RECEIPTS[3], LOG_KEY.public)  # the fixture itself is valid
    return path


def test_valid_receipt(tmp_path: Path, receipt: Path) -> None:
    info = ok_json(
        "verify-receipt", receipt, "--log-key", LOG_KEY.public.vkey(), "--json", cwd=tmp_path
    )
    assert info["valid"] is True
    assert (info["origin"], info["index"], info["tree_size"]) == (ORIGIN, 3, 6)
    assert (info["kind"], info["signal_kind"], info["member"]) == (
        "submission",
        "pdq",
        "police.example",
    )
    assert info["entry_id"] == "sub-3"
    assert "signal_value" not in info
    text = ok("verify-receipt", receipt, "--log-key", LOG_KEY.public.vkey(), cwd=tmp_path).stdout
    assert "receipt:" in text
    assert "valid" in text
    assert "tree size:" in text
    hidden = PDQ[3:] + PDQ[:3]
    assert hidden not in text
    (tmp_path / "log.pub").write_text(LOG_KEY.public.vkey() + "\n")
    shown = ok_json(
        "verify-receipt", receipt, "--log-key", "log.pub", "--json", "--show-hash", cwd=tmp_path
    )
    assert shown["signal_value"] == hidden


def test_retraction_receipt(tmp_path: Path) -> None:
    (tmp_path / "r.txt").write_text(RECEIPTS[5])
    info = ok_json(
        "verify-receipt", "r.txt", "--log-key", LOG_KEY.public.vkey(), "--json", cwd=tmp_path
    )
    assert (info["kind"], info["reason"], info["index"]) == ("retraction", "false-positive", 5)
    assert info["target"]["index"] == 2


def change_leaf_byte(text: str) -> str:
    """The receipt with one byte of its leaf (the signed entry) changed: sub-3 -> sub-4."""
    lines = text.split("\n")
    leaf = base64.b64decode(lines[1].removeprefix("extra "))
    at = leaf.index(b"sub-3") + 4
    lines[1] = "extra " + base64.b64encode(leaf[:at] + b"4" + leaf[at + 1 :]).decode()
    return "\n".join(lines)


def change_checkpoint_byte(text: str) -> str:
    """The receipt with one character of the checkpoint's origin line changed."""
    at = text.index("\n\n") + 2 + 3
    return text[:at] + "X" + text[at + 1 :]


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda t: t.replace("index 3", "index 2"), "inclusion_proof_invalid"),
        (change_leaf_byte, "bad_entry_signature"),
        (change_checkpoint_byte, "bad_note_signature"),
    ],
    ids=["index", "leaf", "checkpoint"],
)
def test_one_byte_change_fails(tmp_path: Path, mutate: Callable[[str], str], code: str) -> None:
    mutated = mutate(RECEIPTS[3])
    assert mutated != RECEIPTS[3]
    (tmp_path / "bad.txt").write_text(mutated)
    line = fails(1, "verify-receipt", "bad.txt", "--log-key", LOG_KEY.public.vkey(), cwd=tmp_path)
    assert line.startswith(f"hashfed: error [{code}]: ")


def test_wrong_key_and_bad_key(tmp_path: Path, receipt: Path) -> None:
    other = SigningKey.generate(ORIGIN)
    line = fails(1, "verify-receipt", receipt, "--log-key", other.public.vkey(), cwd=tmp_path)
    assert "[unverified_note]" in line or "[bad_note_signature]" in line
    fails(2, "verify-receipt", receipt, "--log-key", "not-a-key", cwd=tmp_path)
    fails(2, "verify-receipt", receipt, cwd=tmp_path)  # neither --log-key nor --manifest


def _manifest(tmp_path: Path, log_origin: str) -> Path:
    steward = SigningKey.generate("steward")
    member = Member(
        id="police.example",
        name="Police",
        roles=(Role.SUBMITTER,),
        endpoint="https://police.example",
        log_origin=log_origin,
        log_vkey=(
            LOG_KEY if log_origin == ORIGIN else SigningKey.generate(log_origin)
        ).public.vkey(),
        transport_keys=(
            TransportKey(
                key_id="police-t1",
                public_key=base64.b64encode(steward.public.raw).decode(),
                not_before=0,
            ),
        ),
    )
    manifest = Manifest(
        federation="demo",
        version=1,
        issued_at=0,
        members=(member,),
        stewards=(steward.public.vkey(),),
        steward_quorum=1,
    )
    path = tmp_path / f"manifest-{log_origin.replace('/', '_')}.json"
    write_manifest(path, SignedManifest(manifest=manifest, signatures=()), overwrite=False)
    return path


def test_key_from_manifest(tmp_path: Path, receipt: Path) -> None:
    good = _manifest(tmp_path, ORIGIN)
    info = ok_json("verify-receipt", receipt, "--manifest", good, "--json", cwd=tmp_path)
    assert (info["origin"], info["member"]) == (ORIGIN, "police.example")
    other = _manifest(tmp_path, "elsewhere.example/log")
    line = fails(1, "verify-receipt", receipt, "--manifest", other, cwd=tmp_path)
    assert "[unknown_origin]" in line
