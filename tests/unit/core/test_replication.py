"""verify_batch: an honest batch passes; each crafted fault fails with its own code."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.core.checkpoint import Checkpoint, sign_checkpoint
from federation.core.cosignature import cosign
from federation.core.entries import leaf_bytes, leaf_hash, sign_entry
from federation.core.manifest import Manifest, manifest_json
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


def test_suspension_at_a_log_size_refuses_back_dated_entries() -> None:
    """A thief holding police's log key back-dates ``created`` and appends to the same history:
    a suspension by time lets that through, one at a log size does not."""
    by_size = make_manifest(police={"status": "suspended", "suspended_size": 3})
    by_time = make_manifest(police={"status": "suspended", "suspended_at": T0 + 100})
    fake = FakeLog()
    fake.add(2)
    fake.add(1, created=T0 + 10**6)  # index 2: created late, yet below the vouched size
    honest = run(fake, None, manifest=by_size, member=member_of(by_size, "police"))
    assert honest.size == 3  # type: ignore[attr-defined]
    fake.add(1, created=T0 - 10**6)  # index 3: the thief's back-dated entry

    # the gap: by time alone, the back-dated entry verifies
    late = run(fake, 3, manifest=by_time, member=member_of(by_time, "police"))
    assert [v.index for v in late.leaves] == [3]  # type: ignore[attr-defined]

    for trusted in (3, None, 2):  # whatever the mirror already holds: nothing is applied
        with pytest.raises(VerificationError) as err:
            run(fake, trusted, manifest=by_size, member=member_of(by_size, "police"))
        assert err.value.code == "member_suspended"
        assert err.value.field == "leaves[3]"
        assert "at or beyond the suspension at log size 3" in err.value.message


def test_suspension_by_size_and_time_both_apply() -> None:
    both = make_manifest(
        police={"status": "suspended", "suspended_at": T0 + 100, "suspended_size": 3}
    )
    member = member_of(both, "police")
    fake = FakeLog()
    fake.add(2)
    assert run(fake, None, manifest=both, member=member).size == 2  # type: ignore[attr-defined]
    fake.add(1, created=T0 + 100)  # index 2: below the size, but created at suspended_at
    assert code_of(fake, 2, manifest=both, member=member) == "member_suspended"


def test_the_vouched_prefix_verifies_as_a_chunk_of_a_longer_checkpoint() -> None:
    """A mirror behind can still take every entry below suspended_size: a chunk that ends
    there, proven a prefix of the (thief's) longer checkpoint, passes."""
    manifest = make_manifest(police={"status": "suspended", "suspended_size": 5})
    member = member_of(manifest, "police")
    fake = FakeLog()
    fake.add(5)
    fake.add(3, created=T0 - 10**6)
    chunk = run(
        fake,
        None,
        manifest=manifest,
        member=member,
        leaves=fake.page(0, 5),
        end=5,
        end_proof=fake.hashes.consistency_proof(5, 8),
    )
    assert (chunk.end, chunk.complete) == (5, False)  # type: ignore[attr-defined]
    assert code_of(fake, 5, manifest=manifest, member=member) == "member_suspended"


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


@pytest.mark.parametrize(
    ("suspension", "counts"),
    [
        ({"suspended_size": 0}, False),  # by size alone: at once
        ({"suspended_at": NOW}, False),
        ({"suspended_at": NOW + 1}, True),  # not yet
    ],
)
def test_a_suspended_witness_does_not_count(
    log: FakeLog, suspension: dict[str, int], counts: bool
) -> None:
    base = make_manifest(witness_quorum=1)
    members = [
        {**m, "status": "suspended", **suspension} if m["id"] == "witness" else m
        for m in manifest_json(base)["members"]
    ]
    manifest = Manifest.model_validate({**manifest_json(base), "members": members})
    note = SignedNote.parse(log.note())
    cosigned = add_signatures(note, [cosign(note.text, WITNESS_KEY, NOW)]).serialise()
    args = {"manifest": manifest, "member": member_of(manifest, "police")}
    if counts:
        assert run(log, 5, checkpoint_note=cosigned, **args).size == 13  # type: ignore[attr-defined]
    else:
        assert code_of(log, 5, checkpoint_note=cosigned, **args) == "witness_quorum_not_met"
