"""Group commit in the log writer, on both backends: concurrent appends share one transaction
and one signed checkpoint, yet each request is judged alone and in arrival order.

``asyncio.gather`` starts the appends in order and each one queues before it first yields, so
the committer (started by the first) finds every one of them waiting: the grouping asserted
here is deterministic, not a matter of timing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from federation.core.checkpoint import open_checkpoint
from federation.core.entries import (
    Opinion,
    Retraction,
    Submission,
    entry_leaf_hash,
    leaf_hash,
    sign_entry_leaf,
)
from federation.core.merkle import verify_consistency, verify_inclusion
from federation.errors import ConflictError, InputError, NotFoundError
from federation.log import reader, tree
from federation.log.writer import AppendResult, LogWriter
from federation.store import Store
from federation.store.schema import checkpoints, entries
from tests.unit.log.test_writer import KEY, ORIGIN, open_writer, submission


async def checkpoint_sizes(store: Store) -> list[int]:
    async with store.read() as conn:
        rows = await conn.execute(
            select(checkpoints.c.size).where(checkpoints.c.origin == ORIGIN).order_by("size")
        )
        return [int(size) for (size,) in rows]


async def entry_count(store: Store) -> int:
    async with store.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(entries))).scalar_one())


def ref_to(entry: Submission | Opinion, index: int) -> dict[str, Any]:
    """The target reference of ``entry`` once stored at ``index`` (signing is deterministic)."""
    _, leaf = sign_entry_leaf(entry, KEY)
    return {"origin": "police", "index": index, "leaf_hash": leaf_hash(leaf).hex()}


def check_receipts(result: AppendResult) -> None:
    """Every fresh entry of ``result`` is provably in the checkpoint it was answered with."""
    cp = open_checkpoint(result.note, KEY.public)
    assert (cp.size, cp.root) == (result.checkpoint.size, result.checkpoint.root)
    fresh = [a for a in result.appended if not a.existing]
    proofs = tree.proofs_from_known([a.index for a in fresh], cp.size, result.tree_hashes)
    assert proofs is not None
    for a, proof in zip(fresh, proofs, strict=True):
        verify_inclusion(a.leaf_hash, a.index, cp.size, proof, cp.root)


async def test_concurrent_appends_share_one_transaction_and_checkpoint(db_url: str) -> None:
    writer, store = await open_writer(db_url)
    results = await asyncio.gather(
        *(writer.append([submission(2 * i), submission(2 * i + 1)]) for i in range(8))
    )
    assert await checkpoint_sizes(store) == [0, 16]  # the empty log, then ONE checkpoint
    for i, result in enumerate(results):
        assert result.checkpoint.size == 16
        assert result.note == results[0].note
        # each request's entries are consecutive, in its own order, requests in arrival order
        assert [a.index for a in result.appended] == [2 * i, 2 * i + 1]
        assert [a.signed.entry.id for a in result.appended] == [f"sub-{2 * i}", f"sub-{2 * i + 1}"]
        check_receipts(result)
    # the next group extends the checkpoint it signed before
    later = await writer.append([submission(99)])
    async with store.read() as conn:
        proof = await reader.consistency_proof(conn, ORIGIN, 16, 17)
    verify_consistency(16, 17, proof, results[0].checkpoint.root, later.checkpoint.root)
    await store.close()


async def test_a_refused_request_fails_alone_and_writes_nothing(db_url: str) -> None:
    writer, store = await open_writer(db_url)
    await writer.append([submission(1)])
    other_content = submission(7, entry_id="sub-1")
    missing = {"origin": "police", "index": 40, "leaf_hash": "00" * 32}
    outcomes = await asyncio.gather(
        writer.append([submission(2)]),
        writer.append([submission(3), other_content]),  # id_conflict on its second entry
        writer.append(
            [Retraction(origin="police", id="r", created=1, target=missing, reason="error")]
        ),
        writer.append([submission(4), submission(5)]),
        return_exceptions=True,
    )
    first, conflict, not_found, last = outcomes
    assert isinstance(conflict, ConflictError)
    assert (conflict.code, conflict.field) == ("id_conflict", "1.id")
    assert isinstance(not_found, NotFoundError)
    assert (not_found.code, not_found.field) == ("target_not_found", "0.target")
    assert isinstance(first, AppendResult)
    assert isinstance(last, AppendResult)
    # the refused requests took no index: the others are contiguous after the first append
    assert [a.index for a in first.appended] == [1]
    assert [a.index for a in last.appended] == [2, 3]
    assert first.checkpoint == last.checkpoint
    assert first.checkpoint.size == 4
    check_receipts(first)
    check_receipts(last)
    assert await checkpoint_sizes(store) == [0, 1, 4]
    assert await entry_count(store) == 4
    await store.close()


async def test_retries_within_one_group_are_idempotent(db_url: str) -> None:
    writer, store = await open_writer(db_url)
    original = submission(5)
    retry = original.model_copy(update={"created": 1_800_000_000})  # the node's time differs
    outcomes = await asyncio.gather(
        writer.append([original]),
        writer.append([submission(6), retry]),
        writer.append([submission(8, entry_id="sub-5")]),  # same id, other content
        return_exceptions=True,
    )
    first, second, conflict = outcomes
    assert isinstance(first, AppendResult)
    assert isinstance(second, AppendResult)
    assert isinstance(conflict, ConflictError)
    assert conflict.code == "id_conflict"
    stored = first.appended[0]
    again = second.appended[1]
    assert (stored.existing, again.existing) == (False, True)
    assert (again.index, again.leaf_hash, again.leaf) == (
        stored.index,
        stored.leaf_hash,
        stored.leaf,
    )
    assert again.signed == stored.signed
    assert second.appended[0].index == 1
    assert first.checkpoint == second.checkpoint
    assert first.checkpoint.size == 2
    assert await entry_count(store) == 2
    await store.close()


async def test_later_requests_see_the_entries_of_earlier_ones(db_url: str) -> None:
    writer, store = await open_writer(db_url)
    sub = submission(1)
    target = ref_to(sub, 0)

    def retraction(entry_id: str) -> Retraction:
        return Retraction(origin="police", id=entry_id, created=1, target=target, reason="error")

    opinion = Opinion(origin="police", id="o", created=1, target=target, verdict="true_positive")
    outcomes = await asyncio.gather(
        writer.append([sub]),
        writer.append([opinion]),
        writer.append([retraction("r1")]),
        writer.append([retraction("r2")]),  # the earlier request of the group retracted it
        # an opinion about the opinion of the second request: found, but not a submission
        writer.append(
            [
                Opinion(
                    origin="police",
                    id="o2",
                    created=1,
                    target=ref_to(opinion, 1),
                    verdict="true_positive",
                )
            ]
        ),
        return_exceptions=True,
    )
    appended, opined, retracted, again, at_opinion = outcomes
    assert isinstance(appended, AppendResult)
    assert appended.appended[0].leaf_hash.hex() == target["leaf_hash"]
    assert isinstance(opined, AppendResult)
    assert opined.appended[0].index == 1
    assert isinstance(retracted, AppendResult)
    assert retracted.appended[0].index == 2
    assert isinstance(again, ConflictError)
    assert again.code == "already_retracted"
    assert isinstance(at_opinion, InputError)
    assert at_opinion.code == "target_not_submission"
    assert retracted.checkpoint.size == 3
    await store.close()


async def test_one_batch_cannot_retract_a_submission_twice(db_url: str) -> None:
    writer, store = await open_writer(db_url)
    [stored] = (await writer.append([submission(1)])).appended
    target = {"origin": "police", "index": 0, "leaf_hash": stored.leaf_hash.hex()}
    twice = [
        Retraction(origin="police", id=f"r{i}", created=1, target=target, reason="error")
        for i in range(2)
    ]
    with pytest.raises(ConflictError) as err:
        await writer.append(twice)
    assert (err.value.code, err.value.field) == ("already_retracted", "1.target")
    assert await entry_count(store) == 1
    await store.close()


async def test_a_failed_group_is_retried_one_request_at_a_time(db_url: str) -> None:
    """Another writer (another process, as far as this one knows) appends behind our back:
    the group's INSERT at the index it believed free fails, nothing of it is written, the
    head is reloaded from storage and every request is appended alone."""
    writer, store = await open_writer(db_url)
    await writer.append([submission(0)])
    intruder, intruder_store = await open_writer(db_url)
    await intruder.append([submission(1), submission(2)])
    results = await asyncio.gather(*(writer.append([submission(10 + i)]) for i in range(3)))
    assert [r.appended[0].index for r in results] == [3, 4, 5]
    assert [r.checkpoint.size for r in results] == [4, 5, 6]  # one transaction each
    for result in results:
        check_receipts(result)
    assert await checkpoint_sizes(store) == [0, 1, 3, 4, 5, 6]
    async with store.read() as conn:
        state = await reader.log_state(conn, ORIGIN)
        proof = await reader.consistency_proof(conn, ORIGIN, 1, 6)
        for a in (a for r in results for a in r.appended):
            assert a.leaf_hash == entry_leaf_hash(a.signed)
    verify_consistency(1, 6, proof, (await writer_root(store, 1)), state.root)
    await intruder_store.close()
    await store.close()


async def writer_root(store: Store, size: int) -> bytes:
    async with store.read() as conn:
        note = (
            await conn.execute(
                select(checkpoints.c.note).where(
                    checkpoints.c.origin == ORIGIN, checkpoints.c.size == size
                )
            )
        ).scalar_one()
    return open_checkpoint(note, KEY.public).root


async def test_a_request_cancelled_while_queued_is_not_appended(db_url: str) -> None:
    writer, store = await open_writer(db_url)
    kept = asyncio.ensure_future(writer.append([submission(1)]))
    dropped = asyncio.ensure_future(writer.append([submission(2)]))
    await asyncio.sleep(0)  # both have queued; the committer has not run yet
    dropped.cancel()
    result = await kept
    with pytest.raises(asyncio.CancelledError):
        await dropped
    assert [a.index for a in result.appended] == [0]
    assert result.checkpoint.size == 1
    assert await entry_count(store) == 1
    await store.close()


async def test_a_request_larger_than_the_group_cap_still_goes_through(db_url: str) -> None:
    _, store = await open_writer(db_url)
    writer = LogWriter(
        store, member_id="police", origin=ORIGIN, key=KEY, clock=lambda: 1.7e9, max_group_entries=3
    )
    await writer.open()
    results = await asyncio.gather(
        writer.append([submission(i) for i in range(5)]),  # alone: above the cap
        writer.append([submission(5), submission(6)]),
        writer.append([submission(7)]),  # 2 + 1 <= 3: grouped with the one before
    )
    assert [r.checkpoint.size for r in results] == [5, 8, 8]
    with pytest.raises(InputError) as empty:
        await writer.append([])
    assert empty.value.code == "empty_batch"
    await store.close()
