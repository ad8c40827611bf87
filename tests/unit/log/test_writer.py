"""The node's own log on both backends: append, idempotency, targets, restart, proofs."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import update

from federation.core.checkpoint import open_checkpoint
from federation.core.entries import Opinion, Retraction, Submission, entry_leaf_hash
from federation.core.keys import SigningKey
from federation.core.labels import Labels
from federation.core.merkle import verify_consistency, verify_inclusion
from federation.core.signals import Md5Signal
from federation.errors import ConflictError, InputError, NotFoundError, StorageError
from federation.log import reader
from federation.log.writer import LogWriter
from federation.store import open_store
from federation.store.schema import logs

ORIGIN = "police.example/hashfed"
KEY = SigningKey.from_seed(ORIGIN, hashlib.sha256(b"writer test key").digest())
LABELS = Labels(categories=("csam",), severity="high", confirmed_by="police")


def submission(n: int, entry_id: str | None = None) -> Submission:
    return Submission(
        origin="police",
        id=entry_id or f"sub-{n}",
        created=1_700_000_000 + n,
        signal=Md5Signal(value=f"{n:032x}"),
        labels=LABELS,
    )


async def open_writer(url: str) -> tuple[LogWriter, object]:
    store = await open_store(url)
    writer = LogWriter(store, member_id="police", origin=ORIGIN, key=KEY, clock=lambda: 1.7e9)
    await writer.open()
    return writer, store


async def test_append_batches_sign_consistent_checkpoints(db_url: str) -> None:
    writer, store = await open_writer(db_url)
    first = await writer.append([submission(i) for i in range(5)])
    second = await writer.append([submission(i) for i in range(5, 13)])
    cp1 = open_checkpoint(first.note, KEY.public)
    cp2 = open_checkpoint(second.note, KEY.public)
    assert (cp1.size, cp2.size) == (5, 13)
    assert [a.index for a in second.appended] == list(range(5, 13))
    async with store.read() as conn:  # type: ignore[attr-defined]
        proof = await reader.consistency_proof(conn, ORIGIN, 5, 13)
        verify_consistency(5, 13, proof, cp1.root, cp2.root)
        for a in first.appended + second.appended:
            assert a.leaf_hash == entry_leaf_hash(a.signed)
            path = await reader.inclusion_proof(conn, ORIGIN, a.index, 13)
            verify_inclusion(a.leaf_hash, a.index, 13, path, cp2.root)
        page = await reader.leaves(conn, ORIGIN, 3, 4)
        assert [leaf.index for leaf in page] == [3, 4, 5, 6]
    await store.close()  # type: ignore[attr-defined]


async def test_retry_with_same_id_returns_the_same_entry(db_url: str) -> None:
    writer, store = await open_writer(db_url)
    first = await writer.append([submission(1)])
    retry = await writer.append([submission(1).model_copy(update={"created": 1_800_000_000})])
    assert retry.appended[0].existing
    assert retry.appended[0].index == first.appended[0].index
    assert retry.checkpoint.size == 1
    with pytest.raises(ConflictError) as err:
        await writer.append([submission(2, entry_id="sub-1")])
    assert err.value.code == "id_conflict"
    with pytest.raises(InputError) as dup:
        await writer.append([submission(3, "x"), submission(4, "x")])
    assert dup.value.code == "duplicate_id"
    async with store.read() as conn:  # type: ignore[attr-defined]
        assert (await reader.log_state(conn, ORIGIN)).size == 1
    await store.close()  # type: ignore[attr-defined]


async def test_retraction_and_opinion_targets_are_checked(db_url: str) -> None:
    writer, store = await open_writer(db_url)
    sub = (await writer.append([submission(1)])).appended[0]
    ref = {"origin": "police", "index": sub.index, "leaf_hash": sub.leaf_hash.hex()}
    retraction = Retraction(origin="police", id="r1", created=1, target=ref, reason="error")
    await writer.append([retraction])
    with pytest.raises(ConflictError) as again:
        await writer.append([retraction.model_copy(update={"id": "r2"})])
    assert again.value.code == "already_retracted"
    missing = {**ref, "index": 99}
    with pytest.raises(NotFoundError) as nf:
        await writer.append(
            [Opinion(origin="police", id="o1", created=1, target=missing, verdict="true_positive")]
        )
    assert nf.value.code == "target_not_found"
    wrong = {**ref, "leaf_hash": "00" * 32}
    with pytest.raises(ConflictError) as mismatch:
        await writer.append(
            [Opinion(origin="police", id="o2", created=1, target=wrong, verdict="true_positive")]
        )
    assert mismatch.value.code == "target_mismatch"
    async with store.read() as conn:  # type: ignore[attr-defined]
        assert (await reader.log_state(conn, ORIGIN)).size == 2
    await store.close()  # type: ignore[attr-defined]


async def test_restart_continues_and_tampered_state_is_refused(db_url: str) -> None:
    writer, store = await open_writer(db_url)
    await writer.append([submission(i) for i in range(3)])
    await store.close()  # type: ignore[attr-defined]
    writer, store = await open_writer(db_url)
    result = await writer.append([submission(3)])
    assert result.checkpoint.size == 4
    async with store.transaction() as conn:  # type: ignore[attr-defined]
        await conn.execute(update(logs).values(root=b"\x01" * 32))
    with pytest.raises(StorageError) as err:
        await writer.open()
    assert err.value.code == "log_state_inconsistent"
    await store.close()  # type: ignore[attr-defined]


async def test_foreign_origin_is_refused(db_url: str) -> None:
    writer, store = await open_writer(db_url)
    other = submission(1).model_copy(update={"origin": "hotline"})
    with pytest.raises(InputError) as err:
        await writer.append([other])
    assert err.value.code == "wrong_origin"
    await store.close()  # type: ignore[attr-defined]


async def test_batch_inclusion_proofs_equal_single_ones(db_url: str) -> None:
    writer, store = await open_writer(db_url)
    result = await writer.append([submission(i) for i in range(37)])
    indexes = [a.index for a in result.appended]
    async with store.read() as conn:  # type: ignore[attr-defined]
        batch = await reader.inclusion_proofs(conn, ORIGIN, indexes, 37)
        single = [await reader.inclusion_proof(conn, ORIGIN, i, 37) for i in indexes]
        with pytest.raises(InputError):
            await reader.inclusion_proofs(conn, ORIGIN, [37], 37)
    assert batch == single
    for a, proof in zip(result.appended, batch, strict=True):
        verify_inclusion(a.leaf_hash, a.index, 37, proof, result.checkpoint.root)
    await store.close()  # type: ignore[attr-defined]
