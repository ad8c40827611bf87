"""Mirrored logs on both backends: apply verified batches, idempotency, resume, evidence."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Table, func, select

from federation.core.checkpoint import open_checkpoint
from federation.core.entries import leaf_hash, verify_leaf
from federation.core.merkle import verify_consistency, verify_inclusion
from federation.core.note import SignedNote
from federation.core.replication import InconsistentCheckpoint, VerifiedBatch, verify_batch
from federation.errors import ConflictError, StorageError, VerificationError
from federation.log import mirror, reader
from federation.store import Store, open_store
from federation.store.schema import checkpoints, entries, evidence, logs, tree_hashes
from tests.unit.sync.helpers import T0, FakeLog, make_manifest, member_of

MANIFEST = make_manifest()
POLICE = member_of(MANIFEST, "police")
ORIGIN = POLICE.log_origin


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    opened = await open_store(db_url)
    yield opened
    await opened.close()


async def batch_to(store: Store, log: FakeLog, size: int | None = None) -> VerifiedBatch:
    """Verify ``log`` up to ``size`` against what ``store`` trusts now."""
    n = log.size if size is None else size
    async with store.read() as conn:
        trusted = await mirror.load_trusted(conn, ORIGIN)
    m = 0 if trusted is None else trusted.size
    return verify_batch(
        POLICE,
        trusted,
        log.note(n),
        log.page(m, n),
        log.proof(m, n),
        manifest=MANIFEST,
        now=T0,
    )


async def apply(store: Store, batch: VerifiedBatch) -> bool:
    async with store.transaction() as conn:
        return await mirror.apply_verified(conn, "police", ORIGIN, batch, T0)


async def count(store: Store, table: Table) -> int:
    query = select(func.count()).select_from(table).where(table.c.origin == ORIGIN)
    async with store.read() as conn:
        return int((await conn.execute(query)).scalar_one())


async def test_apply_and_serve_like_our_own_log(store: Store) -> None:
    log = FakeLog()
    log.add(13)
    assert await apply(store, await batch_to(store, log, 5))
    assert await apply(store, await batch_to(store, log))
    async with store.read() as conn:
        state = await reader.log_state(conn, ORIGIN)
        assert (state.size, state.root, state.note) == (13, log.hashes.root(), log.note())
        assert state.member_id == "police"
        page = await reader.leaves(conn, ORIGIN, 0, 1000)
        assert [leaf.leaf for leaf in page] == log.leaves
        assert await reader.consistency_proof(conn, ORIGIN, 5, 13) == log.proof(5, 13)
        assert await reader.checkpoint_at(conn, ORIGIN, 5) == log.note(5)
        trusted = await mirror.load_trusted(conn, ORIGIN)
    assert trusted == log.trusted(13)


async def test_duplicate_apply_is_a_noop(store: Store) -> None:
    log = FakeLog()
    log.add(7)
    batch = await batch_to(store, log)
    assert await apply(store, batch)
    assert not await apply(store, batch)
    older = await batch_to(store, log, 7)  # empty batch at the same size
    assert not older.leaves
    assert not await apply(store, older)
    assert await count(store, entries) == 7
    assert await count(store, checkpoints) == 1


async def test_an_empty_log_applied_twice_is_a_noop(store: Store) -> None:
    """A member that has appended nothing serves a size-0 checkpoint at every poll; the second
    apply once re-inserted that checkpoint and crashed the pull on the unique constraint."""
    log = FakeLog()
    assert await apply(store, await batch_to(store, log))
    assert not await apply(store, await batch_to(store, log))
    assert await count(store, checkpoints) == 1
    log.add(2)
    assert await apply(store, await batch_to(store, log))
    assert await count(store, entries) == 2


async def test_applying_an_older_batch_after_a_newer_one_is_a_noop(store: Store) -> None:
    log = FakeLog()
    log.add(9)
    first = await batch_to(store, log, 4)
    assert await apply(store, first)
    assert await apply(store, await batch_to(store, log))
    assert not await apply(store, first)
    assert await count(store, entries) == 9


async def test_stale_batch_is_refused_and_nothing_written(store: Store) -> None:
    log = FakeLog()
    log.add(9)
    early = await batch_to(store, log, 6)  # from 0
    assert await apply(store, await batch_to(store, log, 3))
    with pytest.raises(ConflictError) as err:
        await apply(store, early)
    assert err.value.code == "stale_batch"
    assert await count(store, entries) == 3


async def test_resume_from_partial_state_converges(store: Store) -> None:
    log = FakeLog()
    log.add(3)
    assert await apply(store, await batch_to(store, log))
    for grow in (1, 4, 8, 1, 15):
        log.add(grow)
        assert await apply(store, await batch_to(store, log))
    async with store.read() as conn:
        state = await reader.log_state(conn, ORIGIN)
    assert (state.size, state.root) == (log.size, log.hashes.root())


@pytest.mark.parametrize("fork_size", [3, 6])
async def test_another_root_at_a_stored_size_is_proven_inconsistent(
    store: Store, fork_size: int
) -> None:
    log = FakeLog()
    log.add(6)
    assert await apply(store, await batch_to(store, log))
    fork = FakeLog()
    fork.add(2)
    fork.add(fork_size - 2, created=T0 + 500)
    # Verified from scratch (as a node that trusted nothing would), then applied here.
    batch = verify_batch(
        POLICE, None, fork.note(), fork.page(0, fork_size), [], manifest=MANIFEST, now=T0
    )
    with pytest.raises(InconsistentCheckpoint) as err:
        await apply(store, batch)
    assert err.value.proven
    assert (err.value.trusted_note, err.value.new_note) == (log.note(), fork.note())
    assert await count(store, entries) == 6


async def test_evidence_freezes_the_log(store: Store) -> None:
    log = FakeLog()
    log.add(4)
    assert await apply(store, await batch_to(store, log))
    async with store.transaction() as conn:
        new = await mirror.record_evidence(
            conn, ORIGIN, log.note(), "forged", "fork", now=T0, proof=[b"\x01" * 32], source="relay"
        )
        again = await mirror.record_evidence(conn, ORIGIN, log.note(), "forged", "second", now=T0)
    assert (new, again) == (True, False)
    async with store.read() as conn:
        assert await mirror.is_frozen(conn, ORIGIN) == "fork"
        rows = (await conn.execute(select(evidence))).all()
        state = await reader.log_state(conn, ORIGIN)
    assert len(rows) == 1
    assert (rows[0].note_a, rows[0].note_b, rows[0].source) == (log.note(), "forged", "relay")
    assert rows[0].proof == '["AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="]'
    assert state.frozen
    log.add(2)
    with pytest.raises(VerificationError) as err:
        await apply(store, await batch_to(store, log))
    assert err.value.code == "log_frozen"
    assert await count(store, entries) == 4


async def test_damaged_tree_table_is_detected(store: Store) -> None:
    log = FakeLog()
    log.add(5)
    assert await apply(store, await batch_to(store, log))
    async with store.transaction() as conn:
        await conn.execute(logs.update().values(root=b"\x07" * 32))
    with pytest.raises(StorageError) as err:
        await batch_to(store, log)
    assert err.value.code == "log_state_inconsistent"


# --- one entry id twice in one log (spec/sync.md §5.1) ---------------------------------------


def check_duplicate_evidence(
    exc: mirror.DuplicateEntry, log: FakeLog, earlier: int, later: int
) -> None:
    """The evidence proves itself with nothing but the origin's log key: both leaves signed,
    one id, both included in one tree that is a prefix of the signed checkpoint."""
    key = POLICE.log_key()
    cp = open_checkpoint(SignedNote.parse(exc.note), key, expected_origin=ORIGIN)
    assert (exc.earlier.index, exc.later.index) == (earlier, later)
    first, second = (verify_leaf(x.leaf, key).entry for x in (exc.earlier, exc.later))
    assert first.id == second.id
    assert exc.earlier.leaf != exc.later.leaf
    root = log.hashes.root(exc.size)
    for x in (exc.earlier, exc.later):
        verify_inclusion(leaf_hash(x.leaf), x.index, exc.size, list(x.proof), root)
    if exc.size == cp.size:
        assert (root, exc.proof) == (cp.root, ())
    else:
        verify_consistency(exc.size, cp.size, list(exc.proof), root, cp.root)


async def test_an_id_held_before_is_refused_with_proven_evidence(store: Store) -> None:
    log = FakeLog()
    log.add(5)
    assert await apply(store, await batch_to(store, log))
    log.add(1)
    log.add_duplicate(of=2)  # index 6
    log.add(2)
    batch = await batch_to(store, log)  # verify_batch sees no repeat within [5, 9)
    async with store.read() as conn:
        trees = int((await conn.execute(select(func.count()).select_from(tree_hashes))).scalar())
    with pytest.raises(mirror.DuplicateEntry) as err:
        await apply(store, batch)
    assert err.value.code == "duplicate_entry_id"
    assert err.value.held_note == log.note(5)
    check_duplicate_evidence(err.value, log, 2, 6)
    # Nothing of the batch was written: no entries, no tree hashes, the same signed state.
    assert await count(store, entries) == 5
    async with store.read() as conn:
        assert (await reader.log_state(conn, ORIGIN)).size == 5
        assert (
            int((await conn.execute(select(func.count()).select_from(tree_hashes))).scalar())
            == trees
        )


async def test_a_chunk_carries_its_end_proof_into_the_evidence(store: Store) -> None:
    log = FakeLog()
    log.add(3)
    assert await apply(store, await batch_to(store, log))
    log.add(4)
    log.add_duplicate(of=0)  # index 7
    log.add(5)  # checkpoint 13; the chunk [3, 10) holds the duplicate
    async with store.read() as conn:
        trusted = await mirror.load_trusted(conn, ORIGIN)
    end_proof = log.proof(10, 13)
    chunk = verify_batch(
        POLICE,
        trusted,
        log.note(),
        log.page(3, 10),
        log.proof(3, 13),
        manifest=MANIFEST,
        now=T0,
        end=10,
        end_proof=end_proof,
    )
    with pytest.raises(mirror.DuplicateEntry) as err:
        async with store.transaction() as conn:
            await mirror.apply_verified(conn, "police", ORIGIN, chunk, T0, end_proof=end_proof)
    assert err.value.size == 10
    assert list(err.value.proof) == end_proof
    check_duplicate_evidence(err.value, log, 0, 7)
    assert await count(store, entries) == 3


async def test_duplicate_evidence_is_stored_listed_and_freezes(store: Store) -> None:
    log = FakeLog()
    log.add(4)
    assert await apply(store, await batch_to(store, log))
    log.add_duplicate(of=1)
    with pytest.raises(mirror.DuplicateEntry) as err:
        await apply(store, await batch_to(store, log))
    async with store.transaction() as conn:
        new = await mirror.record_duplicate(
            conn, ORIGIN, err.value, "duplicate_entry_id: test", now=T0, source="relay"
        )
        again = await mirror.record_duplicate(conn, ORIGIN, err.value, "again", now=T0 + 1)
    assert (new, again) == (True, False)
    async with store.read() as conn:
        assert await mirror.is_frozen(conn, ORIGIN) == "duplicate_entry_id: test"
        listed = await mirror.list_evidence(conn)
        assert await mirror.count_evidence(conn) == 1
    assert listed == [
        {
            "id": listed[0]["id"],
            "kind": "duplicate_entry_id",
            "origin": ORIGIN,
            "note_a": log.note(4),
            "note_b": log.note(),
            "proof": [],
            "size": 5,
            "leaves": [err.value.earlier.as_json(), err.value.later.as_json()],
            "reason": "duplicate_entry_id: test",
            "source": "relay",
            "detected_at": T0,
        }
    ]
    assert [leaf["index"] for leaf in listed[0]["leaves"]] == [1, 4]  # type: ignore[index]
    with pytest.raises(VerificationError) as frozen:
        await apply(store, await batch_to(store, log))
    assert frozen.value.code == "log_frozen"


async def test_split_view_evidence_is_listed_as_such(store: Store) -> None:
    log = FakeLog()
    log.add(2)
    assert await apply(store, await batch_to(store, log))
    async with store.transaction() as conn:
        await mirror.record_evidence(conn, ORIGIN, log.note(), "forged", "fork", now=T0)
        listed = await mirror.list_evidence(conn)
    assert (listed[0]["kind"], listed[0]["proof"]) == ("split_view", [])
    assert "leaves" not in listed[0]


async def test_held_ids_are_found_in_one_query_for_any_number_of_ids(store: Store) -> None:
    """More ids than either backend takes bound parameters (SQLite 32 766, asyncpg 32 767)."""
    log = FakeLog()
    log.add(3)
    assert await apply(store, await batch_to(store, log))
    asked = [f"absent-{i}" for i in range(40_000)] + ["sub-2", "sub-0"]
    async with store.read() as conn:
        found = await mirror.held_entry_ids(conn, ORIGIN, asked)
        assert await mirror.held_entry_ids(conn, ORIGIN, []) == {}
        assert await mirror.held_entry_ids(conn, "relay.example/hashfed", asked) == {}
    assert found == {"sub-0": (0, log.leaves[0]), "sub-2": (2, log.leaves[2])}
