"""Storage side of mirrored logs: the trusted state, applying verified batches, evidence.

A mirror is stored exactly like our own log (``logs``, ``entries``, ``tree_hashes``,
``checkpoints`` keyed by the origin line), so relaying it is the same code path as serving ours.
Only :func:`apply_verified` writes a mirror's leaves, and only from a
:class:`~federation.sync.verify.VerifiedBatch`: verifying and storing are separate steps.

Applying is one transaction that re-reads the log row (``FOR UPDATE`` on PostgreSQL) so that
two appliers racing on one origin cannot both extend it: the second finds the log already at
the batch's size with the same root (a no-op), or moved elsewhere (``stale_batch``, retry).
A frozen log — one with split-view evidence against it — accepts nothing until an operator
acts (spec/sync-section.md §5).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.core import tlog
from federation.errors import ConflictError, StorageError, VerificationError
from federation.log import tree
from federation.log.records import entry_row
from federation.store.schema import checkpoints, entries, evidence, logs

# The one upward import of this layer, and only of pure values: verify.py is sync, I/O-free
# and belongs in core (see spec/sync-section.md), kept in sync/ for now by decision.
from federation.sync.verify import (
    InconsistentCheckpoint,
    TrustedState,
    VerifiedBatch,
    frontier_root,
)

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
    row = (await conn.execute(select(logs).where(logs.c.origin == origin))).first()
    if row is None:
        return None
    size, root = int(row.size), bytes(row.root)
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
    return TrustedState(size, root, frontier, str(row.checkpoint))


async def is_frozen(conn: AsyncConnection, origin: str) -> str | None:
    """The freeze reason of log ``origin``, or None when it is not frozen (or not held)."""
    row = (
        await conn.execute(
            select(logs.c.frozen, logs.c.frozen_reason).where(logs.c.origin == origin)
        )
    ).first()
    if row is None or not row.frozen:
        return None
    return str(row.frozen_reason or "frozen")


async def root_at(conn: AsyncConnection, origin: str, size: int) -> bytes:
    """Root of the first ``size`` leaves of a held log (for comparing gossiped checkpoints)."""
    return await tree.tree_root(conn, origin, size)


async def apply_verified(
    conn: AsyncConnection, member_id: str, origin: str, batch: VerifiedBatch, now: int
) -> bool:
    """Store a verified batch in the caller's transaction; True if anything was written.

    Idempotent: a log already at or beyond the batch's size with the same root at that size is
    left alone (False).  Raises ``log_frozen`` (VerificationError) for a frozen log,
    :class:`InconsistentCheckpoint` (proven) if the stored tree has another root at that size,
    and ConflictError ``stale_batch`` if the log moved since the batch was verified.
    """
    row = (
        await conn.execute(select(logs).where(logs.c.origin == origin).with_for_update())
    ).first()
    if row is not None and row.frozen:
        raise VerificationError(
            f"log {origin} is frozen ({row.frozen_reason}); nothing is applied",
            code=LOG_FROZEN,
        )
    size = 0 if row is None else int(row.size)
    if row is not None and size >= batch.size:
        have = bytes(row.root) if size == batch.size else await root_at(conn, origin, batch.size)
        if have == batch.checkpoint.root:
            return False
        raise InconsistentCheckpoint(
            f"stored tree of {origin} has another root at size {batch.size}",
            trusted_note=str(row.checkpoint),
            new_note=batch.note,
            proven=True,
        )
    if size != batch.start:
        raise ConflictError(
            f"log {origin} is at size {size}, the batch starts at {batch.start}; verify again",
            code=STALE_BATCH,
        )
    if batch.leaves:
        await conn.execute(
            entries.insert(),
            [entry_row(origin, v.index, v.signed, v.leaf, v.leaf_hash) for v in batch.leaves],
        )
    n, root = await tree.append_leaf_hashes(conn, origin, size, [v.leaf_hash for v in batch.leaves])
    if n != batch.size or root != batch.checkpoint.root:
        # Unreachable after verify_batch unless storage disagrees with the trusted frontier.
        raise StorageError(
            f"applying {origin} gave size {n} with another root than its checkpoint",
            code="log_state_inconsistent",
        )
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
