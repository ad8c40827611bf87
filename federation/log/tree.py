"""Database-backed Merkle tree access for any log (ours or a mirror).

The pure functions in :mod:`federation.core.tlog` ask a synchronous ``HashReader`` for one
batch of positions that depends only on the tree shape, never on hash values.  We exploit
that: run the function once with a recording reader to learn the positions, fetch them in one
SELECT, and run it again with the real hashes.  Hashes written earlier in the same transaction
but not yet visible to a fresh read are supplied through ``overlay``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, TypeVar

from sqlalchemy import Connection, select
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.core import tlog
from federation.core.tlog import HashReader
from federation.errors import StorageError
from federation.store.bulk import insert_many
from federation.store.schema import tree_hashes

T = TypeVar("T")
_PLACEHOLDER = b"\x00" * 32


class _NotHeld(Exception):
    """A position the caller's overlay does not hold (internal to :func:`run_with_hashes`)."""


def fetch_hashes_sync(conn: Connection, origin: str, positions: Sequence[int]) -> dict[int, bytes]:
    """Stored hashes of ``origin`` at ``positions`` (missing ones are simply absent)."""
    wanted = sorted(set(positions))
    found: dict[int, bytes] = {}
    for start in range(0, len(wanted), 900):  # stay under SQLite's bound-parameter limit
        chunk = wanted[start : start + 900]
        rows = conn.execute(
            select(tree_hashes.c.position, tree_hashes.c.hash).where(
                tree_hashes.c.origin == origin, tree_hashes.c.position.in_(chunk)
            )
        )
        found.update({int(pos): bytes(h) for pos, h in rows})
    return found


async def fetch_hashes(
    conn: AsyncConnection, origin: str, positions: Sequence[int]
) -> dict[int, bytes]:
    """:func:`fetch_hashes_sync` on an async connection."""
    return await conn.run_sync(fetch_hashes_sync, origin, positions)


async def run_with_hashes(
    conn: AsyncConnection,
    origin: str,
    compute: Callable[[HashReader], T],
    overlay: Mapping[int, bytes] | None = None,
) -> T:
    """Run a pure tree function against the stored hashes of ``origin`` (see module doc)."""
    if overlay:
        # Often (receipts of a fresh append, the root after one) the caller holds every hash:
        # then one pass from memory, instead of a recording pass and a real one.
        held = overlay

        def from_overlay(positions: Sequence[int], /) -> Sequence[bytes]:
            try:
                return [held[p] for p in positions]
            except KeyError:
                raise _NotHeld from None

        try:
            return compute(from_overlay)
        except _NotHeld:
            pass
    needed: list[int] = []

    def record(positions: Sequence[int], /) -> Sequence[bytes]:
        needed.extend(positions)
        return [_PLACEHOLDER] * len(positions)

    compute(record)
    if not needed:
        return compute(record)
    overlay = overlay or {}
    lookup = dict(overlay)
    lookup.update(await fetch_hashes(conn, origin, [p for p in needed if p not in overlay]))

    def read(positions: Sequence[int], /) -> Sequence[bytes]:
        try:
            return [lookup[p] for p in positions]
        except KeyError as exc:
            raise StorageError(
                f"tree hash {exc.args[0]} of {origin} is missing from storage",
                code="tree_hash_missing",
            ) from None

    return compute(read)


async def tree_root(conn: AsyncConnection, origin: str, size: int) -> bytes:
    """RFC 9162 root of the first ``size`` leaves of ``origin``."""
    return await run_with_hashes(conn, origin, lambda read: tlog.tree_root(size, read))


async def inclusion_proof(conn: AsyncConnection, origin: str, index: int, size: int) -> list[bytes]:
    """Inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
    return await run_with_hashes(conn, origin, lambda read: tlog.inclusion_proof(index, size, read))


async def inclusion_proofs(
    conn: AsyncConnection,
    origin: str,
    indexes: Sequence[int],
    size: int,
    known: Mapping[int, bytes] | None = None,
) -> list[list[bytes]]:
    """Inclusion proofs of several leaves in the tree of ``size``, with at most ONE read.

    A batch append answers with a receipt per entry; fetching each proof's hashes separately
    made receipts cost more than the append itself.  ``known`` are stored hashes the caller
    already holds (the writer's frontier and the hashes it just wrote, which are every hash
    the proofs of a fresh batch need), so a fresh batch's receipts read nothing.
    """
    return await run_with_hashes(
        conn,
        origin,
        lambda read: tlog.inclusion_proofs(indexes, size, read),
        known,
    )


def proofs_from_known(
    indexes: Sequence[int], size: int, known: Mapping[int, bytes]
) -> list[list[bytes]] | None:
    """Inclusion proofs in the tree of ``size`` from ``known`` hashes alone, or None if they
    do not hold every hash needed (then ask :func:`inclusion_proofs`, which reads the rest).

    The receipts of a fresh append need nothing but what the append read and wrote, so the
    write route answers without opening a read connection.
    """
    if not known:
        return None

    def read(positions: Sequence[int], /) -> Sequence[bytes]:
        try:
            return [known[p] for p in positions]
        except KeyError:
            raise _NotHeld from None

    try:
        return tlog.inclusion_proofs(indexes, size, read)
    except _NotHeld:
        return None


async def consistency_proof(
    conn: AsyncConnection, origin: str, size1: int, size2: int
) -> list[bytes]:
    """Consistency proof from ``size1`` to ``size2``."""
    return await run_with_hashes(
        conn, origin, lambda read: tlog.consistency_proof(size1, size2, read)
    )


class TreeAppend(NamedTuple):
    """What :func:`append_leaf_hashes` did: the new size and root, and the hashes it knows."""

    size: int
    root: bytes
    known: Mapping[int, bytes]
    """The old tree's frontier (read) and every hash written: all the inclusion proofs of the
    appended leaves in the new tree need, so receipts can be built without another read."""


def frontier_positions(size: int) -> list[int]:
    """Stored-hash positions of the perfect subtrees tiling ``[0, size)``, largest first.

    They are what the root of the tree of ``size`` folds, and every hash an append to that
    tree can need, so a writer that holds them appends without reading the tree.
    """
    positions: list[int] = []

    def record(ps: Sequence[int], /) -> Sequence[bytes]:
        positions.extend(ps)
        return [_PLACEHOLDER] * len(ps)

    tlog.tree_root(size, record)
    return positions


def append_leaf_hashes_sync(
    conn: Connection,
    origin: str,
    size: int,
    leaf_hashes: Sequence[bytes],
    frontier: Mapping[int, bytes] | None = None,
) -> TreeAppend:
    """Store the tree hashes for appending ``leaf_hashes`` to a tree of ``size`` leaves.

    ``frontier``: the hashes at :func:`frontier_positions` of ``size``, when the caller holds
    them (the log writer keeps its own); otherwise they are read, once.  Every new hash is
    written in one executemany; the caller owns the transaction.
    """
    positions = frontier_positions(size)
    if frontier is None:
        known = fetch_hashes_sync(conn, origin, positions)
    else:
        known = {p: frontier[p] for p in positions if p in frontier}
    missing = [p for p in positions if p not in known]
    if missing:
        raise StorageError(
            f"tree hash {missing[0]} of {origin} is missing from storage",
            code="tree_hash_missing",
        )
    written: dict[int, bytes] = {}

    def read(ps: Sequence[int], /) -> Sequence[bytes]:
        return [written.get(p) or known[p] for p in ps]

    n = size
    for leaf in leaf_hashes:
        written.update(tlog.hashes_to_store(n, leaf, read))
        n += 1
    # Positions are assigned in append order, so ``written`` is already sorted.
    insert_many(conn, tree_hashes, [(origin, p, h) for p, h in written.items()])
    known.update(written)
    # The new root folds the new frontier, which lies in the old frontier and what we wrote.
    root = tlog.tree_root(n, lambda ps: [known[p] for p in ps])
    return TreeAppend(n, root, known)


async def append_leaf_hashes(
    conn: AsyncConnection,
    origin: str,
    size: int,
    leaf_hashes: Sequence[bytes],
    frontier: Mapping[int, bytes] | None = None,
) -> TreeAppend:
    """:func:`append_leaf_hashes_sync` on an async connection."""
    return await conn.run_sync(append_leaf_hashes_sync, origin, size, leaf_hashes, frontier)
