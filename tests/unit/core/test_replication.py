"""verify_batch: an honest batch passes; each crafted fault fails with its own code."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.core.checkpoint import Checkpoint, sign_checkpoint
from federation.core.cosignature import cosign
from federation.core.entries import leaf_bytes, leaf_hash, sign_entry
from federation.core.merkle import EMPTY_ROOT
from federation.core.note import SignedNote, add_signatures
from federation.core.replication import (
    InconsistentCheckpoint,
    TrustedState,
    extend_frontier,
    frontier_root,
    verify_batch,
)
from federation.errors import VerificationError
from tests.unit.sync.helpers import (
    LOG_KEYS,
    T0,
    WITNESS_KEY,
    FakeLog,
    make_manifest,
    member_of,
    submission,
)

MANIFEST = make_manifest()
POLICE = member_of(MANIFEST, "police")
NOW = T0 + 10_000


def run(log: FakeLog, trusted_size: int | None, **overrides: object) -> object:
    """verify_batch of ``log`` from ``trusted_size`` to its end, with parts overridden."""
    m = trusted_size or 0
    args: dict[str, object] = {
        "member": POLICE,
        "trusted": None if trusted_size is None else log.trusted(trusted_size),
        "checkpoint_note": log.note(),
        "leaves": log.page(m, log.size),
        "consistency_proof": log.proof(m, log.size),
        "manifest": MANIFEST,
    }
    args.update(overrides)
    return verify_batch(now=NOW, **args)  # type: ignore[arg-type]


def code_of(log: FakeLog, trusted_size: int | None, **overrides: object) -> str:
    with pytest.raises(VerificationError) as err:
        run(log, trusted_size, **overrides)
    return err.value.code


@pytest.fixture
def log() -> FakeLog:
    fake = FakeLog()
    fake.add(13)
    return fake


def test_honest_batch_from_empty_and_from_trusted(log: FakeLog) -> None:
    batch = run(log, None)
    assert [v.index for v in batch.leaves] == list(range(13))  # type: ignore[attr-defined]
    assert batch.size == 13  # type: ignore[attr-defined]
    for m in (1, 5, 8, 12, 13):
        batch = run(log, m)
        assert batch.start == m  # type: ignore[attr-defined]
        assert [v.index for v in batch.leaves] == list(range(m, 13))  # type: ignore[attr-defined]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), data=st.data())
def test_frontier_extension_matches_the_tree(n: int, data: st.DataObject) -> None:
    fake = FakeLog()
    fake.add(n)
    m = data.draw(st.integers(0, n))
    t = fake.trusted(m) if m else TrustedState(0, EMPTY_ROOT, ())
    assert frontier_root(t.frontier) == fake.hashes.root(m)
    size, frontier = extend_frontier(m, t.frontier, [leaf_hash(x) for x in fake.leaves[m:]])
    assert (size, frontier_root(frontier)) == (n, fake.hashes.root())
    batch = run(fake, m or None)
    assert batch.size == n  # type: ignore[attr-defined]


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_every_one_bit_leaf_mutation_fails(data: st.DataObject) -> None:
    fake = FakeLog()
    fake.add(6)
    index = data.draw(st.integers(2, 5))
    leaf = bytearray(fake.leaves[index])
    bit = data.draw(st.integers(0, len(leaf) * 8 - 1))
    leaf[bit // 8] ^= 1 << (bit % 8)
    leaves = fake.page(2, 6)
    leaves[index - 2] = (index, bytes(leaf))
    with pytest.raises(VerificationError):
        run(fake, 2, leaves=leaves)


def test_checkpoint_by_another_key_or_origin(log: FakeLog) -> None:
    other = FakeLog("relay")
    other.add(13)
    assert code_of(log, None, checkpoint_note=other.note()) == "unverified_note"
    wrong_origin = sign_checkpoint(
        Checkpoint("relay.example/hashfed", 13, log.hashes.root()), LOG_KEYS["police"]
    ).serialise()
    assert code_of(log, None, checkpoint_note=wrong_origin) == "origin_mismatch"


def test_rollback(log: FakeLog) -> None:
    assert code_of(log, 13, checkpoint_note=log.note(9), leaves=[]) == "checkpoint_rollback"


@pytest.mark.parametrize("change", ["truncated", "modified", "extra"])
def test_bad_consistency_proof_is_unproven_inconsistency(log: FakeLog, change: str) -> None:
    proof = log.proof(5, 13)
    if change == "truncated":
        proof = proof[:-1]
    elif change == "modified":
        proof[0] = bytes([proof[0][0] ^ 1]) + proof[0][1:]
    else:
        proof = [*proof, proof[0]]
    with pytest.raises(InconsistentCheckpoint) as err:
        run(log, 5, consistency_proof=proof)
    assert err.value.code == "inconsistent_checkpoint"
    assert not err.value.proven
    assert err.value.new_note == log.note()
    assert err.value.trusted_note == log.note(5)


def test_fork_at_same_size_is_proven(log: FakeLog) -> None:
    fork = FakeLog()
    fork.add(12)
    fork.add_leaf(leaf_bytes(sign_entry(submission("police", 99), LOG_KEYS["police"])))
    with pytest.raises(InconsistentCheckpoint) as err:
        run(log, 13, checkpoint_note=fork.note(), leaves=[], consistency_proof=[])
    assert err.value.proven
    assert (err.value.trusted_note, err.value.new_note) == (log.note(), fork.note())


def test_fork_beyond_trusted_fails_consistency(log: FakeLog) -> None:
    fork = FakeLog()
    fork.add(4)
    fork.add_leaf(leaf_bytes(sign_entry(submission("police", 99), LOG_KEYS["police"])))
    fork.add(10)
    code = code_of(
        log,
        8,
        checkpoint_note=fork.note(),
        leaves=fork.page(8, fork.size),
        consistency_proof=fork.proof(8, fork.size),
    )
    assert code == "inconsistent_checkpoint"


def test_dropped_or_misplaced_leaves(log: FakeLog) -> None:
    page = log.page(5, 13)
    assert code_of(log, 5, leaves=page[:3] + page[4:]) == "leaves_not_contiguous"
    assert code_of(log, 5, leaves=page[:-1]) == "leaves_not_contiguous"
    assert code_of(log, 5, leaves=page[1:]) == "leaves_not_contiguous"
    assert code_of(log, 5, leaves=[*page, (13, page[0][1])]) == "leaves_not_contiguous"


def test_swapped_leaves_do_not_rebuild_the_root(log: FakeLog) -> None:
    page = log.page(5, 13)
    swapped = [(5, page[1][1]), (6, page[0][1]), *page[2:]]
    assert code_of(log, 5, leaves=swapped) == "root_mismatch"


def test_tampered_leaf(log: FakeLog) -> None:
    page = log.page(5, 13)
    tampered = page[2][1].replace(b'"value":"0000', b'"value":"1000', 1)
    assert tampered != page[2][1]
    page[2] = (7, tampered)
    assert code_of(log, 5, leaves=page) == "bad_entry_signature"
    page[2] = (7, page[3][1] + b" ")
    assert code_of(log, 5, leaves=page) == "malformed_leaf"


def test_entry_of_another_member() -> None:
    fake = FakeLog()
    fake.add(3)
    foreign = sign_entry(submission("relay", 3), LOG_KEYS["relay"])
    fake.add_leaf(leaf_bytes(foreign))
    assert code_of(fake, 3) == "bad_entry_signature"  # relay's key is not police's
    claimed = sign_entry(submission("relay", 4), LOG_KEYS["police"])
    fake.add_leaf(leaf_bytes(claimed))
    assert code_of(fake, 4, checkpoint_note=fake.note()) == "wrong_entry_origin"


def test_entry_signed_by_wrong_key() -> None:
    fake = FakeLog()
    fake.add(3)
    fake.add(1, signer=LOG_KEYS["self"])
    assert code_of(fake, 3) == "bad_entry_signature"


def test_suspended_members_later_entries_are_refused() -> None:
    manifest = make_manifest(police={"status": "suspended", "suspended_at": T0 + 100})
    member = member_of(manifest, "police")
    fake = FakeLog()
    fake.add(3)  # created T0+0..2: before the suspension
    assert run(fake, None, manifest=manifest, member=member).size == 3  # type: ignore[attr-defined]
    fake.add(1, created=T0 + 100)
    assert code_of(fake, 3, manifest=manifest, member=member) == "member_suspended"


def test_duplicate_entry_id_in_batch() -> None:
    fake = FakeLog()
    fake.add(2)
    fake.add_leaf(fake.leaves[1])
    assert code_of(fake, 1) == "duplicate_entry_id"


def test_witness_quorum(log: FakeLog) -> None:
    manifest = make_manifest(witness_quorum=1)
    member = member_of(manifest, "police")
    note = log.note()
    assert code_of(log, 5, manifest=manifest, member=member) == "witness_quorum_not_met"
    body = SignedNote.parse(note).text
    future = add_signatures(SignedNote.parse(note), [cosign(body, WITNESS_KEY, NOW + 3600)])
    assert (
        code_of(log, 5, manifest=manifest, member=member, checkpoint_note=future.serialise())
        == "witness_quorum_not_met"
    )
    cosigned = add_signatures(SignedNote.parse(note), [cosign(body, WITNESS_KEY, NOW)])
    batch = run(log, 5, manifest=manifest, member=member, checkpoint_note=cosigned.serialise())
    assert batch.size == 13  # type: ignore[attr-defined]
