"""Read side of every log this node holds (its own and its mirrors): what peers and auditors
fetch — checkpoints, entry pages and proofs — always against a size we have a checkpoint for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.errors import InputError, NotFoundError
from federation.log import tree
from federation.store.schema import checkpoints, entries, logs

MAX_PAGE = 1000


@dataclass(frozen=True)
class LogState:
    """The latest checkpoint this node holds for one log."""

    origin: str
    member_id: str
    size: int
    root: bytes
    note: str
    frozen: bool
    frozen_reason: str | None


@dataclass(frozen=True)
class StoredLeaf:
    """One leaf as served: its index and exact bytes."""

    index: int
    leaf: bytes
    leaf_hash: bytes


async def log_state(conn: AsyncConnection, origin: str) -> LogState:
    """The latest state of log ``origin``; NotFoundError when the node holds no such log."""
    row = (await conn.execute(select(logs).where(logs.c.origin == origin))).first()
    if row is None:
        raise NotFoundError(f"this node holds no log {origin!r}", code="unknown_log")
    return LogState(
        origin,
        row.member_id,
        int(row.size),
        bytes(row.root),
        row.checkpoint,
        bool(row.frozen),
        row.frozen_reason,
    )


async def all_log_states(conn: AsyncConnection) -> list[LogState]:
    """Every log held, ordered by origin."""
    rows = await conn.execute(select(logs).order_by(logs.c.origin))
    return [
        LogState(
            r.origin,
            r.member_id,
            int(r.size),
            bytes(r.root),
            r.checkpoint,
            bool(r.frozen),
            r.frozen_reason,
        )
        for r in rows
    ]


async def checkpoint_at(conn: AsyncConnection, origin: str, size: int) -> str | None:
    """The stored checkpoint note of ``origin`` at exactly ``size``, if we kept one."""
    return (
        await conn.execute(
            select(checkpoints.c.note).where(
                checkpoints.c.origin == origin, checkpoints.c.size == size
            )
        )
    ).scalar_one_or_none()


async def leaves(conn: AsyncConnection, origin: str, start: int, limit: int) -> list[StoredLeaf]:
    """Leaves ``[start, start+limit)`` of ``origin`` that lie within its current checkpoint."""
    if start < 0:
        raise InputError("start must be ≥ 0", code="invalid_range", field="start")
    if not 1 <= limit <= MAX_PAGE:
        raise InputError(f"limit must be 1..{MAX_PAGE}", code="invalid_range", field="limit")
    state = await log_state(conn, origin)
    end = min(start + limit, state.size)
    if start >= end:
        return []
    rows = await conn.execute(
        select(entries.c.idx, entries.c.leaf, entries.c.leaf_hash)
        .where(entries.c.origin == origin, entries.c.idx >= start, entries.c.idx < end)
        .order_by(entries.c.idx)
    )
    return [StoredLeaf(int(r.idx), bytes(r.leaf), bytes(r.leaf_hash)) for r in rows]


async def inclusion_proof(conn: AsyncConnection, origin: str, index: int, size: int) -> list[bytes]:
    """Proof that leaf ``index`` is in the tree of ``size`` (≤ the current checkpoint)."""
    state = await log_state(conn, origin)
    if not 0 < size <= state.size:
        raise InputError(
            f"size must be 1..{state.size} (the current checkpoint)",
            code="invalid_range",
            field="size",
        )
    if not 0 <= index < size:
        raise InputError(f"index must be 0..{size - 1}", code="invalid_range", field="index")
    return await tree.inclusion_proof(conn, origin, index, size)


async def inclusion_proofs(
    conn: AsyncConnection,
    origin: str,
    indexes: Sequence[int],
    size: int,
    known: Mapping[int, bytes] | None = None,
) -> list[list[bytes]]:
    """Proofs for several leaves of the tree of ``size`` (receipts for a batch), one read.

    ``known``: stored hashes the caller already holds (an append's), read from nowhere else.
    """
    state = await log_state(conn, origin)
    if not 0 < size <= state.size:
        raise InputError(
            f"size must be 1..{state.size} (the current checkpoint)",
            code="invalid_range",
            field="size",
        )
    for index in indexes:
        if not 0 <= index < size:
            raise InputError(f"index must be 0..{size - 1}", code="invalid_range", field="index")
    return await tree.inclusion_proofs(conn, origin, indexes, size, known)


async def consistency_proof(
    conn: AsyncConnection, origin: str, size1: int, size2: int
) -> list[bytes]:
    """Proof that the tree of ``size1`` is a prefix of the tree of ``size2``."""
    state = await log_state(conn, origin)
    if not 0 < size2 <= state.size:
        raise InputError(
            f"to must be 1..{state.size} (the current checkpoint)",
            code="invalid_range",
            field="to",
        )
    if not 0 < size1 <= size2:
        raise InputError(f"from must be 1..{size2}", code="invalid_range", field="from")
    return await tree.consistency_proof(conn, origin, size1, size2)
