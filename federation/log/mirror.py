"""Storage side of mirrored logs: the trusted state, applying verified batches, evidence.

A mirror is stored exactly like our own log (``logs``, ``entries``, ``tree_hashes``,
``checkpoints`` keyed by the origin line), so relaying it is the same code path as serving ours.
Only :func:`apply_verified` writes a mirror's leaves, and only from a
:class:`~federation.core.replication.VerifiedBatch`: verifying and storing are separate steps.

Applying is one transaction that re-reads the log row (``FOR UPDATE`` on PostgreSQL) so that
two appliers racing on one origin cannot both extend it: the second finds the log already at
the batch's size with the same root (a no-op), or moved elsewhere (``stale_batch``, retry).
A frozen log — one with split-view evidence against it — accepts nothing until an operator
acts (spec/sync.md §5).

A log caught up in chunks (spec/sync.md §3.1) holds more verified leaves than its last signed
checkpoint covers.  That verified size lives in ``mirror_progress``; ``logs`` keeps the last
*signed* state, so what we relay as a checkpoint is always a signed note no larger than the
leaves we hold, and the next pull resumes from the verified size.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Sequence

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.core import tlog
from federation.core.replication import (
    InconsistentCheckpoint,
    TrustedState,
    VerifiedBatch,
    frontier_root,
)
from federation.errors import ConflictError, StorageError, VerificationError
from federation.log import tree
from federation.log.records import entry_row
from federation.store.schema import checkpoints, entries, evidence, logs, mirror_progress

LOG_FROZEN = "log_frozen"
STALE_BATCH = "stale_batch"


def frontier_positions(size: int) -> list[int]:
    """Stored-hash positions of the perfect subtrees tiling ``[0, size)``, largest first."""
    positions: list[int] = []

    def record(ps: Sequence[int], /) -> Sequence[bytes]:
        positions.extend(ps)
        return [b"\x00" * 32] * len(ps)

    tlog.tree_root(size, record)
    return positions


async def load_trusted(conn: AsyncConnection, origin: str) -> TrustedState | None:
    """The last verified state of log ``origin`` with its compact range; None if not held.

    Reads O(log n) stored hashes and checks that they fold to the stored root, so a damaged
    tree table is found before anything is appended on top of it.
    """
    progress = (
        await conn.execute(select(mirror_progress).where(mirror_progress.c.origin == origin))
    ).first()
    row = (await conn.execute(select(logs).where(logs.c.origin == origin))).first()
    if progress is not None:
        size, root, note = int(progress.size), bytes(progress.root), str(progress.target_note)
    elif row is not None:
        size, root, note = int(row.size), bytes(row.root), str(row.checkpoint)
    else:
        return None
    positions = frontier_positions(size)
    found = await tree.fetch_hashes(conn, origin, positions)
    try:
        frontier = tuple(found[p] for p in positions)
    except KeyError as exc:
        raise StorageError(
            f"tree hash {exc.args[0]} of {origin} is missing from storage",
            code="tree_hash_missing",
        ) from None
    if frontier_root(frontier) != root:
        raise StorageError(
            f"stored tree of {origin} does not fold to its stored root at size {size}",
            code="log_state_inconsistent",
        )
    return TrustedState(size, root, frontier, note)


async def is_frozen(conn: AsyncConnection, origin: str) -> str | None:
    """The freeze reason of log ``origin``, or None when it is not frozen (or not held).

    A log with no signed state yet (caught up in chunks, or never) has no ``logs`` row to
    flag; there any stored evidence freezes it.
    """
    row = (
        await conn.execute(
            select(logs.c.frozen, logs.c.frozen_reason).where(logs.c.origin == origin)
        )
    ).first()
    if row is None:
        found = (
            await conn.execute(
                select(evidence.c.reason).where(evidence.c.origin == origin).limit(1)
            )
        ).first()
        return None if found is None else str(found.reason)
    if not row.frozen:
        return None
    return str(row.frozen_reason or "frozen")


async def root_at(conn: AsyncConnection, origin: str, size: int) -> bytes:
    """Root of the first ``size`` leaves of a held log (for comparing gossiped checkpoints)."""
    return await tree.tree_root(conn, origin, size)


async def apply_verified(
    conn: AsyncConnection, member_id: str, origin: str, batch: VerifiedBatch, now: int
) -> bool:
    """Store a verified batch (or chunk) in the caller's transaction; True if anything was written.

    Idempotent: a log already at or beyond the batch's end with the same root there is left
    alone (False).  Raises ``log_frozen`` (VerificationError) for a frozen log,
    :class:`InconsistentCheckpoint` (proven) if the stored tree has another root at that size,
    and ConflictError ``stale_batch`` if the log moved since the batch was verified.  A complete
    batch makes its checkpoint the log's signed state; a chunk only advances the verified size.
    """
    row = (
        await conn.execute(select(logs).where(logs.c.origin == origin).with_for_update())
    ).first()
    if row is not None and row.frozen:
        raise VerificationError(
            f"log {origin} is frozen ({row.frozen_reason}); nothing is applied",
            code=LOG_FROZEN,
        )
    progress = (
        await conn.execute(select(mirror_progress).where(mirror_progress.c.origin == origin))
    ).first()
    signed = 0 if row is None else int(row.size)
    held = progress if progress is not None else row
    size = 0 if held is None else int(held.size)
    if held is not None and size >= batch.end:
        held_note = held.target_note if progress is not None else held.checkpoint
        if size == batch.end:
            have = bytes(held.root)
        else:
            have = await root_at(conn, origin, batch.end)
        if have != batch.root:
            raise InconsistentCheckpoint(
                f"stored tree of {origin} has another root at size {batch.end}",
                trusted_note=str(held_note),
                new_note=batch.note,
                proven=True,
            )
        if not batch.complete or batch.checkpoint.size <= signed:
            return False
        # The leaves are held (an earlier chunk); only the signed state is new.
    elif size != batch.start:
        raise ConflictError(
            f"log {origin} is at size {size}, the batch starts at {batch.start}; verify again",
            code=STALE_BATCH,
        )
    else:
        await _store_leaves(conn, origin, size, batch)
    if not batch.complete:
        values = {
            "size": batch.end,
            "root": batch.root,
            "target_note": batch.note,
            "updated_at": now,
        }
        if progress is None:
            await conn.execute(
                mirror_progress.insert().values(origin=origin, member_id=member_id, **values)
            )
        else:
            await conn.execute(
                update(mirror_progress).where(mirror_progress.c.origin == origin).values(**values)
            )
        return True
    if progress is None or int(progress.size) <= batch.checkpoint.size:
        await conn.execute(mirror_progress.delete().where(mirror_progress.c.origin == origin))
    n, root = batch.checkpoint.size, batch.checkpoint.root
    values = {"size": n, "root": root, "checkpoint": batch.note, "updated_at": now}
    if row is None:
        await conn.execute(
            logs.insert().values(origin=origin, member_id=member_id, frozen=False, **values)
        )
    else:
        await conn.execute(update(logs).where(logs.c.origin == origin).values(**values))
    await conn.execute(
        checkpoints.insert().values(
            origin=origin, size=n, root=root, note=batch.note, received_at=now
        )
    )
    return True


async def _store_leaves(
    conn: AsyncConnection, origin: str, size: int, batch: VerifiedBatch
) -> None:
    if batch.leaves:
        await conn.execute(
            entries.insert(),
            [entry_row(origin, v.index, v.signed, v.leaf, v.leaf_hash) for v in batch.leaves],
        )
    grown = await tree.append_leaf_hashes(conn, origin, size, [v.leaf_hash for v in batch.leaves])
    if grown.size != batch.end or grown.root != batch.root:
        # Unreachable after verify_batch unless storage disagrees with the trusted frontier.
        raise StorageError(
            f"applying {origin} gave size {grown.size} with another root than verified",
            code="log_state_inconsistent",
        )


async def record_evidence(
    conn: AsyncConnection,
    origin: str,
    note_a: str,
    note_b: str,
    reason: str,
    *,
    now: int,
    proof: Sequence[bytes] = (),
    source: str | None = None,
) -> bool:
    """Keep two inconsistent signed checkpoints of ``origin`` raw and freeze that log.

    The log stays at its last good checkpoint; its first freeze reason is kept.  Returns False
    when this exact pair was already on record (gossip repeats itself).
    """
    existing = (
        await conn.execute(
            select(evidence.c.id).where(
                evidence.c.origin == origin,
                evidence.c.note_a == note_a,
                evidence.c.note_b == note_b,
            )
        )
    ).first()
    if existing is None:
        await conn.execute(
            evidence.insert().values(
                origin=origin,
                note_a=note_a,
                note_b=note_b,
                proof=json.dumps([base64.b64encode(p).decode() for p in proof]) if proof else None,
                reason=reason,
                source=source,
                detected_at=now,
            )
        )
    await conn.execute(
        update(logs)
        .where(logs.c.origin == origin, logs.c.frozen.is_(False))
        .values(frozen=True, frozen_reason=reason)
    )
    return existing is None


async def list_evidence(conn: AsyncConnection, limit: int = 100) -> list[dict[str, object]]:
    """Stored split-view evidence, newest first, in the ``GET /v1/evidence`` form."""
    rows = await conn.execute(select(evidence).order_by(evidence.c.id.desc()).limit(limit))
    return [
        {
            "id": int(r.id),
            "origin": r.origin,
            "note_a": r.note_a,
            "note_b": r.note_b,
            "proof": json.loads(r.proof) if r.proof else [],
            "reason": r.reason,
            "source": r.source,
            "detected_at": int(r.detected_at),
        }
        for r in rows
    ]


async def count_evidence(conn: AsyncConnection) -> int:
    """How many evidence records are stored (for ``/metrics``)."""
    return int((await conn.execute(select(func.count()).select_from(evidence))).scalar_one())


async def unsigned_leaves(
    conn: AsyncConnection, origin: str, page: int = 1000
) -> AsyncIterator[list[tuple[int, bytes]]]:
    """Leaves held beyond the last signed checkpoint (a chunked catch-up cut short), in pages.

    The match index loads only up to each log's signed size, so after a restart the replicator
    hands these to it again; they are verified (proven a prefix of a signed checkpoint).
    """
    progress = (
        await conn.execute(select(mirror_progress.c.size).where(mirror_progress.c.origin == origin))
    ).first()
    if progress is None:
        return
    signed = (
        await conn.execute(select(logs.c.size).where(logs.c.origin == origin))
    ).scalar_one_or_none()
    start, end = int(signed or 0), int(progress.size)
    while start < end:
        rows = await conn.execute(
            select(entries.c.idx, entries.c.leaf)
            .where(entries.c.origin == origin, entries.c.idx >= start)
            .where(entries.c.idx < min(end, start + page))
            .order_by(entries.c.idx)
        )
        batch = [(int(r.idx), bytes(r.leaf)) for r in rows]
        if not batch:
            return
        yield batch
        start = batch[-1][0] + 1
