"""The node's own log: the single writer that appends, signs and commits.

Appending is one transaction that (1) checks idempotency and targets, (2) stores the signed
entries and the new tree hashes, and (3) signs and stores the new checkpoint.  Because the
checkpoint and the tree it describes are committed together, a crash leaves either both or
neither, and the next checkpoint is always an extension of the last one signed — the node can
never sign two inconsistent tree heads, across restarts too.  Nobody is answered before the
commit has returned, i.e. before the transaction is durable (``synchronous=FULL`` on SQLite).

**Group commit.**  Every :meth:`LogWriter.append` call is one *request* (one HTTP batch).
Requests queue for a single committer task, which takes every request waiting (up to
``max_group_entries`` entries) and appends them in ONE transaction under ONE new signed
checkpoint, as Trillian's sequencer and Go's checksum database do.  Concurrent clients thus
share the fixed cost of a transaction (round trips, fsync, a checkpoint signature) instead of
queueing behind one another.  What each request observes is what it would observe alone:

- its entries get consecutive indexes in its own order; the checkpoint of its receipts may
  cover more entries than its own (those of the other requests of the group);
- requests are judged in arrival order as if appended one after another: an id, a target or
  a retraction of an earlier request in the group is seen by a later one (a retry of an id
  of an earlier request is an idempotent ``existing`` entry, a retraction of an entry of an
  earlier request finds it);
- a request whose entries are refused (``id_conflict``, ``target_not_found``,
  ``already_retracted``, ...) fails alone, with its own error, and writes nothing: every
  check is a read made before anything of the group is written, so it is simply left out;
- if the group's transaction fails anyway (a storage error), nothing of it was written, and
  each request is retried alone in its own transaction, so a request that cannot be stored
  still fails without taking the others down.

The committer keeps the log head (size, root, signed note, and the O(log n) frontier hashes)
in memory, so an append reads nothing of the tree.  A group's transaction is one synchronous
function run by :meth:`federation.store.Store.run_transaction` (on SQLite, on the store's
writer thread: one thread hop per group instead of several per statement).  The database
stays the cross-process guard: an index, tree position or checkpoint size that exists fails
the INSERT, the whole transaction rolls back, and the head is reloaded (and checked) from
storage.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, bindparam, select, update

from federation.core import tlog
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
from federation.errors import (
    ConflictError,
    FederationError,
    InputError,
    NotFoundError,
    StorageError,
)
from federation.log import tree
from federation.log.records import entry_values
from federation.store import Store
from federation.store.bulk import insert_many
from federation.store.schema import checkpoints, entries, logs

AnyEntry = Submission | Retraction | Opinion

MAX_GROUP_ENTRIES = 2000
"""Default cap on the entries one group commit takes (a larger request still goes alone)."""

_ID_CHUNK = 900  # ids per IN (...) lookup: under SQLite's old bound-parameter limit

# The statements of every group commit, built once: SQLAlchemy then finds their compiled form
# from a memoised cache key instead of building and hashing a new statement each time.
_EXISTING = select(entries.c.entry_id, entries.c.idx, entries.c.leaf, entries.c.leaf_hash).where(
    entries.c.origin == bindparam("log_origin"),
    entries.c.entry_id.in_(bindparam("ids", expanding=True)),
)
_SET_HEAD = (
    update(logs)
    .where(logs.c.origin == bindparam("log_origin"))
    .values(
        size=bindparam("new_size"),
        root=bindparam("new_root"),
        checkpoint=bindparam("new_note"),
        updated_at=bindparam("now"),
    )
)
_ADD_CHECKPOINT = checkpoints.insert()


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


@dataclass(frozen=True)
class _Head:
    """The committed state of our log, as the committer keeps it between appends."""

    size: int
    root: bytes
    note: str
    frontier: Mapping[int, bytes]
    """Hashes at :func:`federation.log.tree.frontier_positions` of ``size``."""


@dataclass(frozen=True)
class _Signed:
    """An entry of a request, signed before it queues (signing needs no log state)."""

    signed: SignedEntry
    leaf: bytes
    leaf_hash: bytes


@dataclass(eq=False)
class _Request:
    """One :meth:`LogWriter.append` call waiting for (or in) a group commit."""

    batch: Sequence[AnyEntry]
    signed: list[_Signed]
    future: asyncio.Future[AppendResult]

    def resolve(self, outcome: AppendResult | BaseException) -> None:
        if self.future.done():  # the caller went away (cancelled); the outcome stands
            return
        if isinstance(outcome, AppendResult):
            self.future.set_result(outcome)
        else:
            self.future.set_exception(outcome)


@dataclass
class _Group:
    """What the requests of one group, judged in order, add to the log (nothing written yet).

    Later requests see the entries of earlier ones through it: ids, indexes, and retracted
    targets.
    """

    size: int
    """Log size before the group."""
    new: list[_Signed] = field(default_factory=list)
    ids: dict[str, Appended] = field(default_factory=dict)
    retracted: set[tuple[str, int]] = field(default_factory=set)

    @property
    def next_index(self) -> int:
        return self.size + len(self.new)


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
        max_group_entries: int = MAX_GROUP_ENTRIES,
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
        self._max_group = max(1, max_group_entries)
        self._head: _Head | None = None
        self._queue: deque[_Request] = deque()
        self._committer: asyncio.Task[None] | None = None

    async def open(self) -> Checkpoint:
        """Create the empty log on first start, else check the stored state is self-consistent.

        The stored checkpoint must be signed by our key and its root must equal the root the
        stored tree hashes give: otherwise the database was altered or belongs to another key,
        and signing on top of it could fork the log.
        """
        self._head = None
        checkpoint, head = await self._store.run_transaction(self._open)
        self._head = head
        return checkpoint

    def _open(self, conn: Connection) -> tuple[Checkpoint, _Head]:
        row = conn.execute(select(logs.c.checkpoint).where(logs.c.origin == self.origin)).first()
        if row is None:
            checkpoint, note = self._sign_and_store(conn, 0, EMPTY_ROOT)
            return checkpoint, _Head(0, EMPTY_ROOT, note, {})
        checkpoint = open_checkpoint(row.checkpoint, self._key.public, expected_origin=self.origin)
        head = self._load_head(conn)
        if checkpoint.size != head.size or checkpoint.root != head.root:
            raise _inconsistent(self.origin, head.size)
        return checkpoint, head

    async def append(self, batch: Sequence[AnyEntry]) -> AppendResult:
        """Append ``batch`` (entries of this member, unsigned) atomically, possibly in one
        transaction with concurrent appends (see module docstring); returns once durable."""
        _check_batch(batch, self.member_id)
        signed: list[_Signed] = []
        for entry in batch:
            signed_entry, leaf = sign_entry_leaf(entry, self._key)
            signed.append(_Signed(signed_entry, leaf, leaf_hash(leaf)))
        loop = asyncio.get_running_loop()
        request = _Request(batch, signed, loop.create_future())
        self._queue.append(request)
        if self._committer is None:
            self._committer = loop.create_task(self._commit_queued())
        return await request.future

    # -- the committer ---------------------------------------------------------------------

    async def _commit_queued(self) -> None:
        """Commit groups until the queue is empty (one task at a time; see :meth:`append`)."""
        try:
            while self._queue:
                group = self._take_group()
                if group:
                    await self._commit_group(group)
        finally:
            self._committer = None
            while self._queue:  # only when cancelled: nobody is left to commit them
                self._queue.popleft().future.cancel()

    def _take_group(self) -> list[_Request]:
        group: list[_Request] = []
        entries_taken = 0
        while self._queue:
            request = self._queue[0]
            if request.future.done():  # cancelled while waiting: never appended
                self._queue.popleft()
                continue
            if group and entries_taken + len(request.batch) > self._max_group:
                break
            group.append(self._queue.popleft())
            entries_taken += len(request.batch)
        return group

    async def _commit_group(self, group: list[_Request]) -> None:
        try:
            outcomes = await self._transaction(group)
        except asyncio.CancelledError:
            self._head = None
            for request in group:
                request.future.cancel()
            raise
        except Exception as exc:
            self._head = None  # whatever the database holds now, reload it
            if len(group) == 1:
                group[0].resolve(exc)
                return
            for request in group:  # nothing was written: each one alone, failing alone
                outcome: AppendResult | BaseException
                try:
                    [outcome] = await self._transaction([request])
                except asyncio.CancelledError:
                    self._head = None
                    for pending in group:
                        pending.future.cancel()
                    raise
                except Exception as alone:
                    self._head = None
                    outcome = alone
                request.resolve(outcome)
            return
        for request, outcome in zip(group, outcomes, strict=True):
            request.resolve(outcome)

    async def _transaction(self, group: list[_Request]) -> list[AppendResult | FederationError]:
        """Judge the requests in order and append those that pass, in one transaction."""
        head = self._head

        def append(conn: Connection) -> tuple[list[AppendResult | FederationError], _Head]:
            return self._append_group(conn, group, head)

        outcomes, self._head = await self._store.run_transaction(append)
        return outcomes  # committed (durable) now

    def _append_group(
        self, conn: Connection, group: list[_Request], head: _Head | None
    ) -> tuple[list[AppendResult | FederationError], _Head]:
        """The body of one group's transaction (runs on the store's writer thread on SQLite:
        it touches nothing but ``conn``, ``group`` and immutable writer state)."""
        if head is None:
            head = self._load_head(conn)
        staged = _Group(head.size)
        existing = self._existing(conn, [e.id for r in group for e in r.batch])
        judged: list[list[Appended] | FederationError] = []
        for request in group:
            try:
                judged.append(self._judge(conn, request, existing, staged))
            except FederationError as exc:
                judged.append(exc)
        if staged.new:
            rows = [
                entry_values(self.origin, head.size + j, s.signed, s.leaf, s.leaf_hash)
                for j, s in enumerate(staged.new)
            ]
            insert_many(conn, entries, rows)
            grown = tree.append_leaf_hashes_sync(
                conn, self.origin, head.size, [s.leaf_hash for s in staged.new], head.frontier
            )
            checkpoint, note = self._sign_and_store(conn, grown.size, grown.root)
            positions = tree.frontier_positions(grown.size)
            head = _Head(grown.size, grown.root, note, {p: grown.known[p] for p in positions})
            known = grown.known
        else:
            checkpoint = Checkpoint(self.origin, head.size, head.root)
            note, known = head.note, head.frontier
        outcomes = [
            outcome
            if isinstance(outcome, FederationError)
            else AppendResult(tuple(outcome), checkpoint, note, known)
            for outcome in judged
        ]
        return outcomes, head

    def _judge(
        self,
        conn: Connection,
        request: _Request,
        existing: Mapping[str, Appended],
        staged: _Group,
    ) -> list[Appended]:
        """The request's entries as they will stand, or the error that refuses the request.

        Only once every entry passed are its new entries added to ``staged`` (so a refused
        request leaves no trace for the requests after it).
        """
        out: list[Appended] = []
        new: list[_Signed] = []
        ids: dict[str, Appended] = {}
        retracted: set[tuple[str, int]] = set()
        for i, (entry, signed) in enumerate(zip(request.batch, request.signed, strict=True)):
            stored = existing.get(entry.id) or staged.ids.get(entry.id)
            if stored is not None:
                out.append(_same_or_conflict(entry, stored, i))
                continue
            if not isinstance(entry, Submission):
                self._check_target(conn, entry, i, staged, retracted)
            appended = Appended(
                staged.next_index + len(new), signed.leaf_hash, signed.signed, False, signed.leaf
            )
            ids[entry.id] = Appended(
                appended.index, signed.leaf_hash, signed.signed, True, signed.leaf
            )
            new.append(signed)
            out.append(appended)
        staged.new.extend(new)
        staged.ids.update(ids)
        staged.retracted |= retracted
        return out

    def _load_head(self, conn: Connection) -> _Head:
        """The stored head, checked: the frontier hashes must fold to the stored root."""
        columns = select(logs.c.size, logs.c.root, logs.c.checkpoint)
        row = conn.execute(columns.where(logs.c.origin == self.origin)).first()
        if row is None:
            raise StorageError("log is not open", code="log_not_open")
        size, root = int(row.size), bytes(row.root)
        positions = tree.frontier_positions(size)
        frontier = tree.fetch_hashes_sync(conn, self.origin, positions)
        missing = [p for p in positions if p not in frontier]
        if missing:
            raise StorageError(
                f"tree hash {missing[0]} of {self.origin} is missing from storage",
                code="tree_hash_missing",
            )
        if tlog.tree_root(size, lambda ps: [frontier[p] for p in ps]) != root:
            raise _inconsistent(self.origin, size)
        return _Head(size, root, str(row.checkpoint), frontier)

    def _existing(self, conn: Connection, ids: Sequence[str]) -> dict[str, Appended]:
        out: dict[str, Appended] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _ID_CHUNK):
            chunk = unique[start : start + _ID_CHUNK]
            for r in conn.execute(_EXISTING, {"log_origin": self.origin, "ids": chunk}):
                leaf = bytes(r.leaf)
                out[r.entry_id] = Appended(
                    int(r.idx), bytes(r.leaf_hash), parse_leaf(leaf), True, leaf
                )
        return out

    def _check_target(
        self,
        conn: Connection,
        entry: Retraction | Opinion,
        i: int,
        staged: _Group,
        retracted: set[tuple[str, int]],
    ) -> None:
        """Retractions and opinions must point at an entry this node holds, by leaf hash.

        The entries of earlier requests of the group count as held; ``retracted`` collects the
        targets this request retracts (a submission is retracted at most once, in one batch
        too).
        """
        target = entry.target
        key = (target.origin, target.index)
        pending = (
            staged.new[target.index - staged.size]
            if target.origin == self.member_id and staged.size <= target.index < staged.next_index
            else None
        )
        if pending is not None:
            kind: str = pending.signed.entry.kind
            held_hash = pending.leaf_hash
        else:
            row = conn.execute(
                select(entries.c.kind, entries.c.leaf_hash).where(
                    entries.c.member_id == target.origin, entries.c.idx == target.index
                )
            ).first()
            if row is None:
                raise NotFoundError(
                    f"target entry {target.origin}#{target.index} is not in any log this node"
                    " holds",
                    code="target_not_found",
                    field=f"{i}.target",
                )
            kind, held_hash = str(row.kind), bytes(row.leaf_hash)
        if held_hash.hex() != target.leaf_hash:
            raise ConflictError(
                f"target {target.origin}#{target.index} has a different leaf hash",
                code="target_mismatch",
                field=f"{i}.target.leaf_hash",
            )
        if kind != "submission":
            raise InputError(
                f"target {target.origin}#{target.index} is a {kind}, not a submission",
                code="target_not_submission",
                field=f"{i}.target",
            )
        if not isinstance(entry, Retraction):
            return
        if key in staged.retracted or key in retracted:
            raise ConflictError(
                f"entry {target.origin}#{target.index} is already retracted",
                code="already_retracted",
                field=f"{i}.target",
            )
        already = conn.execute(
            select(entries.c.entry_id).where(
                entries.c.origin == self.origin,
                entries.c.kind == "retraction",
                entries.c.target_origin == target.origin,
                entries.c.target_index == target.index,
            )
        ).first()
        if already is not None:
            raise ConflictError(
                f"entry {target.origin}#{target.index} is already retracted"
                f" (by {already.entry_id!r})",
                code="already_retracted",
                field=f"{i}.target",
            )
        retracted.add(key)

    def _sign_and_store(self, conn: Connection, size: int, root: bytes) -> tuple[Checkpoint, str]:
        checkpoint = Checkpoint(self.origin, size, root)
        note = sign_checkpoint(checkpoint, self._key).serialise()
        now = int(self._clock())
        if size == 0:
            conn.execute(
                logs.insert().values(
                    origin=self.origin,
                    member_id=self.member_id,
                    frozen=False,
                    size=size,
                    root=root,
                    checkpoint=note,
                    updated_at=now,
                )
            )
        else:
            conn.execute(
                _SET_HEAD,
                {
                    "log_origin": self.origin,
                    "new_size": size,
                    "new_root": root,
                    "new_note": note,
                    "now": now,
                },
            )
        conn.execute(
            _ADD_CHECKPOINT,
            {"origin": self.origin, "size": size, "root": root, "note": note, "received_at": now},
        )
        return checkpoint, note


def _check_batch(batch: Sequence[AnyEntry], member_id: str) -> None:
    """What a request must satisfy on its own, before it queues."""
    if not batch:
        raise InputError("nothing to append", code="empty_batch")
    seen: set[str] = set()
    for i, entry in enumerate(batch):
        if entry.origin != member_id:
            raise InputError(
                f"entry origin {entry.origin!r} is not this node's member {member_id!r}",
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


def _inconsistent(origin: str, size: int) -> StorageError:
    return StorageError(
        f"stored log state of {origin} is inconsistent (size {size}); refusing to sign on top of"
        " it",
        code="log_state_inconsistent",
    )


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
