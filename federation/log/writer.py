"""The node's own log: the single writer that appends, signs and commits.

Appending a batch is one transaction that (1) checks idempotency and targets, (2) signs each
entry as the member, (3) stores the leaves and the new tree hashes, and (4) signs and stores
the new checkpoint.  Because the checkpoint and the tree it describes are committed together,
a crash leaves either both or neither, and the next checkpoint is always an extension of the
last one signed — the node can never sign two inconsistent tree heads, across restarts too.

An ``asyncio.Lock`` serialises appends within the process; the database row for the log is the
cross-process guard (an INSERT of an index that exists fails the transaction).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.core.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from federation.core.entries import (
    Opinion,
    Retraction,
    SignedEntry,
    Submission,
    leaf_hash,
    parse_leaf,
    sign_entry_leaf,
    signing_payload,
)
from federation.core.keys import SigningKey
from federation.core.merkle import EMPTY_ROOT
from federation.errors import ConflictError, InputError, NotFoundError, StorageError
from federation.log import tree
from federation.log.records import entry_row
from federation.store import Store
from federation.store.schema import checkpoints, entries, logs

AnyEntry = Submission | Retraction | Opinion


@dataclass(frozen=True)
class Appended:
    """One entry as stored in our log."""

    index: int
    leaf_hash: bytes
    signed: SignedEntry
    existing: bool
    """True when the entry was already in the log (an idempotent retry)."""
    leaf: bytes = b""
    """The leaf bytes (what receipts carry), so nobody has to encode the entry again."""


@dataclass(frozen=True)
class AppendResult:
    """What one append committed: the entries and the checkpoint that covers them."""

    appended: tuple[Appended, ...]
    checkpoint: Checkpoint
    note: str
    tree_hashes: Mapping[int, bytes] = field(default_factory=dict)
    """Stored tree hashes this append read or wrote: every hash the inclusion proofs of its
    fresh entries need (see :func:`federation.log.tree.append_leaf_hashes`)."""


class LogWriter:
    """Appends to the member's own log (see module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        member_id: str,
        origin: str,
        key: SigningKey,
        clock: Callable[[], float],
    ) -> None:
        if key.name != origin:
            raise InputError(
                f"log key is named {key.name!r} but the log origin is {origin!r}",
                code="log_key_mismatch",
            )
        self._store = store
        self.member_id = member_id
        self.origin = origin
        self._key = key
        self._clock = clock
        self._lock = asyncio.Lock()

    async def open(self) -> Checkpoint:
        """Create the empty log on first start, else check the stored state is self-consistent.

        The stored checkpoint must be signed by our key and its root must equal the root the
        stored tree hashes give: otherwise the database was altered or belongs to another key,
        and signing on top of it could fork the log.
        """
        async with self._store.transaction() as conn:
            row = (await conn.execute(select(logs).where(logs.c.origin == self.origin))).first()
            if row is None:
                checkpoint, _ = await self._sign_and_store(conn, 0, EMPTY_ROOT)
                return checkpoint
            cp = open_checkpoint(row.checkpoint, self._key.public, expected_origin=self.origin)
            root = await tree.tree_root(conn, self.origin, int(row.size))
            if cp.size != row.size or cp.root != root or bytes(row.root) != root:
                raise StorageError(
                    f"stored log state of {self.origin} is inconsistent (size {row.size});"
                    " refusing to sign on top of it",
                    code="log_state_inconsistent",
                )
            return cp

    async def append(self, batch: Sequence[AnyEntry]) -> AppendResult:
        """Append ``batch`` (entries of this member, unsigned) in one transaction."""
        if not batch:
            raise InputError("nothing to append", code="empty_batch")
        seen: set[str] = set()
        for i, entry in enumerate(batch):
            if entry.origin != self.member_id:
                raise InputError(
                    f"entry origin {entry.origin!r} is not this node's member {self.member_id!r}",
                    code="wrong_origin",
                    field=f"{i}.origin",
                )
            if entry.id in seen:
                raise InputError(
                    f"id {entry.id!r} appears twice in one batch",
                    code="duplicate_id",
                    field=f"{i}.id",
                )
            seen.add(entry.id)
        async with self._lock, self._store.transaction() as conn:
            state = (
                await conn.execute(select(logs.c.size).where(logs.c.origin == self.origin))
            ).scalar_one_or_none()
            if state is None:
                raise StorageError("log is not open", code="log_not_open")
            size = int(state)
            existing = await self._existing(conn, batch)
            results: list[Appended | None] = []
            new: list[tuple[SignedEntry, bytes, bytes]] = []
            for i, entry in enumerate(batch):
                if entry.id in existing:
                    results.append(_same_or_conflict(entry, existing[entry.id], i))
                    continue
                await self._check_target(conn, entry, i)
                signed, leaf = sign_entry_leaf(entry, self._key)
                new.append((signed, leaf, leaf_hash(leaf)))
                results.append(None)
            if new:
                rows = [
                    entry_row(self.origin, size + j, signed, leaf, lh)
                    for j, (signed, leaf, lh) in enumerate(new)
                ]
                await conn.execute(entries.insert(), rows)
                grown = await tree.append_leaf_hashes(
                    conn, self.origin, size, [lh for _, _, lh in new]
                )
                known = grown.known
                checkpoint, note = await self._sign_and_store(conn, grown.size, grown.root)
            else:
                known = {}
                checkpoint, note = await self._current(conn)
            fresh = iter(range(len(new)))
            out: list[Appended] = []
            for item in results:
                if item is None:
                    j = next(fresh)
                    signed, leaf, lh = new[j]
                    out.append(Appended(size + j, lh, signed, existing=False, leaf=leaf))
                else:
                    out.append(item)
        return AppendResult(tuple(out), checkpoint, note, known)

    async def _existing(
        self, conn: AsyncConnection, batch: Sequence[AnyEntry]
    ) -> dict[str, Appended]:
        rows = await conn.execute(
            select(entries.c.entry_id, entries.c.idx, entries.c.leaf, entries.c.leaf_hash).where(
                entries.c.origin == self.origin,
                entries.c.entry_id.in_([e.id for e in batch]),
            )
        )
        out: dict[str, Appended] = {}
        for r in rows:
            leaf = bytes(r.leaf)
            out[r.entry_id] = Appended(int(r.idx), bytes(r.leaf_hash), parse_leaf(leaf), True, leaf)
        return out

    async def _check_target(self, conn: AsyncConnection, entry: AnyEntry, i: int) -> None:
        """Retractions and opinions must point at an entry this node holds, by leaf hash."""
        if isinstance(entry, Submission):
            return
        target = entry.target
        row = (
            await conn.execute(
                select(entries.c.kind, entries.c.leaf_hash).where(
                    entries.c.member_id == target.origin, entries.c.idx == target.index
                )
            )
        ).first()
        if row is None:
            raise NotFoundError(
                f"target entry {target.origin}#{target.index} is not in any log this node holds",
                code="target_not_found",
                field=f"{i}.target",
            )
        if bytes(row.leaf_hash).hex() != target.leaf_hash:
            raise ConflictError(
                f"target {target.origin}#{target.index} has a different leaf hash",
                code="target_mismatch",
                field=f"{i}.target.leaf_hash",
            )
        if row.kind != "submission":
            raise InputError(
                f"target {target.origin}#{target.index} is a {row.kind}, not a submission",
                code="target_not_submission",
                field=f"{i}.target",
            )
        if isinstance(entry, Retraction):
            already = (
                await conn.execute(
                    select(entries.c.entry_id).where(
                        entries.c.origin == self.origin,
                        entries.c.kind == "retraction",
                        entries.c.target_origin == target.origin,
                        entries.c.target_index == target.index,
                    )
                )
            ).first()
            if already is not None:
                raise ConflictError(
                    f"entry {target.origin}#{target.index} is already retracted"
                    f" (by {already.entry_id!r})",
                    code="already_retracted",
                    field=f"{i}.target",
                )

    async def _current(self, conn: AsyncConnection) -> tuple[Checkpoint, str]:
        row = (await conn.execute(select(logs).where(logs.c.origin == self.origin))).one()
        return Checkpoint(self.origin, int(row.size), bytes(row.root)), str(row.checkpoint)

    async def _sign_and_store(
        self, conn: AsyncConnection, size: int, root: bytes
    ) -> tuple[Checkpoint, str]:
        checkpoint = Checkpoint(self.origin, size, root)
        note = sign_checkpoint(checkpoint, self._key).serialise()
        now = int(self._clock())
        values = {"size": size, "root": root, "checkpoint": note, "updated_at": now}
        if size == 0:
            await conn.execute(
                logs.insert().values(
                    origin=self.origin, member_id=self.member_id, frozen=False, **values
                )
            )
        else:
            await conn.execute(update(logs).where(logs.c.origin == self.origin).values(**values))
        await conn.execute(
            checkpoints.insert().values(
                origin=self.origin, size=size, root=root, note=note, received_at=now
            )
        )
        return checkpoint, note


def _same_or_conflict(entry: AnyEntry, stored: Appended, i: int) -> Appended:
    """An idempotent retry returns the stored entry; the same id with other content is 409.

    ``created`` is set by the node at request time, so a retry differs there; everything the
    client sent must be equal.
    """
    original = stored.signed.entry
    if signing_payload(entry.model_copy(update={"created": original.created})) != signing_payload(
        original
    ):
        raise ConflictError(
            f"id {entry.id!r} was already used for a different entry",
            code="id_conflict",
            field=f"{i}.id",
        )
    return stored
