"""Exact radius search over PDQ hashes with amortised O(1) add and remove.

Ids.  :meth:`PdqIndex.add` numbers rows in arrival order and returns those numbers as ids.  An
id never changes — rows move between segments when they are rebuilt, ids go with them — which
is what :class:`~federation.index.match.MatchIndex` relies on to map ids to log entries.

Structure.  Every row lives in exactly one segment, and segments own their rows:

- the *open* segment (:mod:`federation.index.open_segment`) takes new rows: an add writes the
  hash and one chain link per chunk, O(chunks), and the row matches once ``add`` returns;
- when the open segment is full — capacity ``C = max(open_capacity, ceil(h / 8))``, ``h`` the
  rows held when it was opened — it is frozen (still queried) and sealed into a CSR
  :class:`~federation.index.segment.Segment` with the same layout;
- when more than ``merge_fanout`` (``K``, default 4) sealed segments exist, all of them are
  merged into one, with a layout tuned to its rows (:mod:`federation.index.tuning`);
- an add of at least ``C`` rows at once is built straight into a sealed segment (together with
  the open segment's rows), in the call: its cost is proportional to the batch.

Cost of an add, precisely: amortised O(1) — O(chunks) to link the row, plus at most
``2 + 8 / K`` row-rebuilds (4 with the default ``K``; a row-rebuild is one permutation of the
row and one counting-sort pass per chunk, well under a microsecond): 1 when its open segment is
sealed, and at most ``1 + 8 / K`` in merges, because a merge rebuilds the previous main
segment ``M`` plus the ``S`` rows sealed since, and ``S >= K C >= K M / 8`` (each of the ``K``
sealed segments holds at least ``C`` adds).  :attr:`IndexStats.rebuilt_rows` counts them and
the tests hold it to that bound.  Nothing depends on ``n`` except through ``C``.  A remove
sets a tombstone, O(1); when tombstoned rows exceed a quarter of the rows held, a compaction
(seal the open segment, merge everything) is scheduled: at least ``h / 4`` removes pay for
rebuilding ``h`` rows, so at most 4 row-rebuilds per remove, amortised.

Off the add path.  With ``background=True`` (the default) seals and merges run on a worker
thread (the compiled kernels release the GIL) while queries keep using the old segments; the
result is swapped in with one assignment.  An add waits only if the writer gets a full open
segment ahead of the worker (two frozen segments pending), and ``flush`` waits for the worker.
``background=False`` does the same work inline, deterministically (tests).  Queries probe at
most ``merge_fanout + 1`` sealed segments (plus any bulk-built while a merge runs) and at most 3
open ones, each by the same exact rule.

Tombstoned rows are reclaimed by every rebuild: a seal or merge does not copy a row tombstoned
before it starts (hash, id and postings are all dropped), so dead rows cost memory only until
the next rebuild and compaction keeps them under a quarter of the rows held.  The tombstone
array itself keeps one byte per id ever issued.  While a merge runs, old and new segments
coexist (peak memory ≈ twice the merged segments).

Threading contract: one writer thread calls ``add``, ``remove``, ``seal``, ``merge``, ``flush``,
``save`` and ``close``; any number of threads may call ``query``, ``query_batch``,
``query_dihedral`` and ``len`` at the same time, without locks.  A query reads the snapshot
(:class:`_View`) published last before it started: it sees every add and remove that returned
before it started, a rebuild either wholly or not at all, and an add or remove concurrent with
it either way.  A batch is cut into blocks that the calling thread and ``threads - 1`` query
threads of the index take in turn; those threads start with the first batch and live until
:meth:`PdqIndex.close` or until the index is garbage-collected, so their scratch buffers keep
the sizes earlier batches needed.

Exactness.  Each segment picks its own bit permutation and chunking, plain or paired
(:mod:`federation.index.tuning`; open segments take the largest sealed segment's layout).
Results are exact (100% recall) at every radius 0..63: a segment answers radii up to its
layout's pigeonhole bound (31 for 8 chunks, 43 for 11, 47 for the 12 paired chunks, whose
probes also apply the partner test; see :mod:`federation.index.layout`) from its chunk tables
and scans its rows beyond that.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np
import numpy.typing as npt

from federation.core.signals import DIHEDRAL_TRANSFORMS
from federation.errors import InputError
from federation.index import _kernels, snapshot
from federation.index.layout import PDQ_WORDS, Layout, default_layout
from federation.index.open_segment import OpenSegment
from federation.index.segment import (
    Found,
    Segment,
    build_segment,
    probe_segment,
    query_segment_numpy,
    scan_numpy,
    scan_rows,
)
from federation.index.tuning import choose_layout, sample_rows

PDQ_MAX_RADIUS = 63
"""Largest radius a query may ask for (policy bound of the federation)."""

MAX_FROZEN = 2
"""Frozen open segments allowed to wait for their seal before an add waits for the worker."""

BLOCKS_PER_THREAD = 4
"""A batch query is cut into up to this many blocks per thread, taken by whichever thread is
free: on a loaded machine one slow core does not hold up the whole batch."""

MIN_BLOCK = 64
"""Queries per block below which a batch is not cut finer than one block per thread."""

KEEP_BUFFER = 1 << 18
"""Largest per-thread scratch buffer kept between queries, in columns (6 MB for the hit
buffer): query threads live as long as the index, and one huge answer should not pin its
buffers for good."""

_NO_IDS = np.empty(0, dtype=np.uint32)

Backend = Literal["auto", "numba", "numpy"]
HashInput = str | bytes | npt.NDArray[np.uint64]


@dataclass(frozen=True)
class Hits:
    """Rows within the radius of one query, sorted by (distance, id)."""

    ids: npt.NDArray[np.int64]
    """Row ids returned by :meth:`PdqIndex.add`."""
    distances: npt.NDArray[np.int64]
    """Hamming distance of each row to the query."""
    transforms: npt.NDArray[np.int8] | None = None
    """For dihedral queries: index into DIHEDRAL_TRANSFORMS of the best-matching transform."""

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass(frozen=True)
class IndexStats:
    """Shape of the index at one instant (for tests, benchmarks and status pages)."""

    segments: tuple[int, ...]
    """Rows per sealed segment."""
    open_rows: tuple[int, ...]
    """Rows per open segment: frozen ones awaiting their seal, then the one taking adds."""
    open_room: int
    """Rows the open segment taking adds accepts before it is frozen (0: none is open; the
    next add opens one)."""
    live: int
    """Rows not tombstoned."""
    held: int
    """Rows stored: live ones plus tombstoned ones not yet reclaimed."""
    seals: int
    """Seals completed since the index was created."""
    merges: int
    """Merges completed since the index was created."""
    rebuilt_rows: int
    """Rows copied into new segments by seals and merges since the index was created (the
    amortised cost: at most ``2 + 8 / merge_fanout`` per added row, see the module docstring;
    explicit ``seal``/``merge`` calls and compactions come on top)."""
    busy: bool
    """True while maintenance is queued or running."""


@dataclass(frozen=True, eq=False)
class _View:
    """What a query reads: published whole by the writer or the worker, never modified."""

    segments: tuple[Segment, ...]
    opens: tuple[OpenSegment, ...]
    counts: tuple[int, ...]
    """Rows of each open segment visible in this view."""
    alive: npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class _Task:
    """One unit of maintenance: seal ``frozen``, or merge ``inputs``."""

    frozen: OpenSegment | None
    inputs: tuple[Segment, ...]


def pdq_words(hashes: HashInput | Sequence[str | bytes]) -> npt.NDArray[np.uint64]:
    """PDQ hashes (64-hex strings, 32-byte values, or an ``(n, 4)``/``(4,)`` uint64 array) as an
    ``(n, 4)`` uint64 array; raises InputError naming what is wrong."""
    if isinstance(hashes, np.ndarray):
        arr = hashes.reshape(-1, PDQ_WORDS) if hashes.ndim == 1 else hashes
        if arr.dtype != np.uint64 or arr.ndim != 2 or arr.shape[1] != PDQ_WORDS:
            raise InputError("PDQ hash array must be uint64 of shape (n, 4)", code="invalid_hash")
        return np.ascontiguousarray(arr)
    items: Sequence[str | bytes] = [hashes] if isinstance(hashes, str | bytes) else hashes
    raw = bytearray()
    for item in items:
        if isinstance(item, str):
            if len(item) != 64:
                raise InputError("PDQ hash must be 64 hex characters", code="invalid_hash")
            try:
                raw += bytes.fromhex(item)
            except ValueError:
                raise InputError("PDQ hash must be hex", code="invalid_hash") from None
        elif len(item) == 32:
            raw += item
        else:
            raise InputError("PDQ hash must be 32 bytes", code="invalid_hash")
    return np.frombuffer(bytes(raw), dtype=np.uint64).reshape(-1, PDQ_WORDS).copy()


def _pick_backend(backend: Backend) -> bool:
    if backend == "numba" and not _kernels.HAVE_NUMBA:
        raise InputError("numba backend requested but numba is not importable", code="config")
    return backend == "numba" or (backend == "auto" and _kernels.HAVE_NUMBA)


class PdqIndex:
    """Exact Hamming-radius search over 256-bit PDQ hashes with amortised O(1) add and remove
    (see the module docstring for costs and the threading contract)."""

    def __init__(
        self,
        radius_default: int = 31,
        *,
        backend: Backend = "auto",
        open_capacity: int = 65536,
        max_prefix_bits: int = 20,
        threads: int | None = None,
        background: bool = True,
        merge_fanout: int = 4,
    ) -> None:
        if open_capacity < 1 or merge_fanout < 1:
            raise InputError("open_capacity and merge_fanout must be positive", code="config")
        self.radius_default = self._check_radius(radius_default)
        self.use_numba = _pick_backend(backend)
        self.open_capacity = open_capacity
        self.max_prefix_bits = max_prefix_bits
        self.threads = threads or os.cpu_count() or 1
        self.background = background
        self.merge_fanout = merge_fanout
        # Writer state: changed under _cond by the writer thread and the worker.
        self._cond = threading.Condition()
        self._segments: tuple[Segment, ...] = ()
        self._frozen: list[OpenSegment] = []
        self._open: OpenSegment | None = None
        self._alive = np.zeros(1024, dtype=np.bool_)
        self._next_id = 0
        self._live = 0
        self._held = 0
        self._dead_held = 0
        self._merge_wanted = False
        self._running: _Task | None = None
        self._worker: threading.Thread | None = None
        self._error: BaseException | None = None
        self._seals = 0
        self._merges = 0
        self._rebuilt_rows = 0
        self._view = _View((), (), (), self._alive)
        self._local = threading.local()
        # Batch-query threads (threads - 1 of them: the caller works too), started by the first
        # batch and kept, so their scratch buffers keep the sizes earlier batches needed.
        self._pool: ThreadPoolExecutor | None = None
        self._pool_closer: weakref.finalize[..., PdqIndex] | None = None
        self._pool_lock = threading.Lock()

    # -- updates ---------------------------------------------------------------------------

    def add(self, hashes: HashInput | Sequence[str | bytes]) -> npt.NDArray[np.int64]:
        """Add hashes; returns their ids (consecutive, in order).  They match at once."""
        new = pdq_words(hashes)
        k = new.shape[0]
        with self._cond:
            self._raise_worker_error()
            first = self._next_id
            if k:
                self._grow_alive(first + k)
                self._alive[first : first + k] = True
                self._next_id += k
                self._live += k
                self._held += k
                cap = self._open.capacity if self._open is not None else self._target_capacity()
                if k >= cap:
                    self._add_bulk(new, first)
                else:
                    self._add_open(new, first)
                self._schedule()
        return np.arange(first, first + k, dtype=np.int64)

    def remove(self, ids: npt.ArrayLike) -> int:
        """Tombstone rows (idempotent); returns how many were live.  Unknown ids raise."""
        rows = np.asarray(ids, dtype=np.int64).reshape(-1)
        with self._cond:
            self._raise_worker_error()
            if rows.size and (rows.min() < 0 or rows.max() >= self._next_id):
                raise InputError("unknown PDQ index id", code="not_indexed", field="id")
            rows = np.unique(rows)
            was = int(self._alive[rows].sum())
            self._alive[rows] = False
            self._live -= was
            self._dead_held += was
            if was and not self._merge_wanted and 4 * self._dead_held > self._held:
                self._merge_wanted = True
                self._freeze()
                self._schedule()
        return was

    def seal(self) -> None:
        """Freeze the open segment (if it holds rows) and schedule its seal."""
        with self._cond:
            self._raise_worker_error()
            self._freeze()
            self._schedule()

    def merge(self) -> None:
        """Compact: seal the open segment and merge every sealed segment into one, dropping
        tombstoned rows (on the worker unless ``background=False``; :meth:`flush` waits)."""
        with self._cond:
            self._raise_worker_error()
            self._merge_wanted = True
            self._freeze()
            self._schedule()

    def flush(self) -> None:
        """Wait until no maintenance is queued or running; re-raises a worker failure."""
        with self._cond:
            self._schedule()
            while self._worker is not None:
                self._cond.wait()
            self._raise_worker_error()

    def __len__(self) -> int:
        return self._live

    @property
    def nbytes(self) -> int:
        """Bytes held: tombstones, and every segment's rows and tables."""
        view = self._view
        return int(
            view.alive[: self._next_id].nbytes
            + sum(s.nbytes for s in view.segments)
            + sum(o.nbytes for o in view.opens)
        )

    @property
    def segment_sizes(self) -> list[int]:
        """Rows per sealed segment (open segments are not counted)."""
        return [s.rows for s in self._view.segments]

    def stats(self) -> IndexStats:
        """Segment sizes and maintenance counters, read consistently."""
        with self._cond:
            view = self._view
            return IndexStats(
                segments=tuple(s.rows for s in view.segments),
                open_rows=view.counts,
                open_room=0 if self._open is None else self._open.room,
                live=self._live,
                held=self._held,
                seals=self._seals,
                merges=self._merges,
                rebuilt_rows=self._rebuilt_rows,
                busy=self._worker is not None or self._next_task() is not None,
            )

    def _grow_alive(self, want: int) -> None:
        if want <= self._alive.shape[0]:
            return
        # 1.25x growth keeps the copy amortised O(1) per id; old views keep the old array.
        alive = np.zeros(max(want, int(self._alive.shape[0] * 1.25)), dtype=np.bool_)
        alive[: self._next_id] = self._alive[: self._next_id]
        self._alive = alive

    def _target_capacity(self) -> int:
        return max(self.open_capacity, -(-self._held // 8))

    def _main_layout(self) -> Layout:
        if not self._segments:
            return default_layout()
        return max(self._segments, key=lambda s: s.rows).layout

    def _add_open(self, new: npt.NDArray[np.uint64], first: int) -> None:
        a, k = 0, new.shape[0]
        while a < k:
            if self._open is not None and self._open.room == 0:
                self._freeze()
            if self._open is None:
                self._open = OpenSegment(
                    first + a,
                    self._target_capacity(),
                    self._main_layout(),
                    max_prefix_bits=self.max_prefix_bits,
                    use_numba=self.use_numba,
                )
            take = min(k - a, self._open.room)
            self._open.append(new[a : a + take])
            a += take
            self._publish()

    def _add_bulk(self, new: npt.NDArray[np.uint64], first: int) -> None:
        words = new.copy()  # the segment owns its rows; the caller may reuse its array
        ids = np.arange(first, first + new.shape[0], dtype=np.int64)
        if self._open is not None and self._open.count:
            old_words, old_ids = self._open.rows(self._open.count)
            keep = self._alive[old_ids]
            self._reclaimed(int(old_ids.shape[0] - keep.sum()))
            self._rebuilt_rows += int(keep.sum())  # instead of their seal
            words = np.concatenate([old_words[keep], words])
            ids = np.concatenate([old_ids[keep], ids])
        self._open = None
        self._segments += (self._build(words, ids, None, self.threads),)
        self._publish()

    def _reclaimed(self, dropped: int) -> None:
        self._held -= dropped
        self._dead_held -= dropped

    def _freeze(self) -> None:
        """Retire the open segment from adds and queue its seal (waiting for the worker if
        :data:`MAX_FROZEN` seals are already queued)."""
        op = self._open
        if op is not None and op.count and self.background:
            # Wait with the segment still open: the worker publishes views while we wait,
            # and they must keep showing its rows.
            while len(self._frozen) >= MAX_FROZEN and self._error is None:
                self._schedule()
                self._cond.wait()
        self._open = None
        if op is not None and op.count:
            self._frozen.append(op)
            self._publish()

    def _publish(self) -> None:
        opens = tuple(self._frozen) + ((self._open,) if self._open is not None else ())
        self._view = _View(self._segments, opens, tuple(o.count for o in opens), self._alive)

    def _build(
        self,
        words: npt.NDArray[np.uint64],
        ids: npt.NDArray[np.int64],
        layout: Layout | None,
        threads: int,
    ) -> Segment:
        if layout is None:
            sample = sample_rows(words, seed=int(ids[0]) if ids.shape[0] else 0)
            layout = choose_layout(
                sample,
                words.shape[0],
                self.radius_default,
                self.max_prefix_bits,
                paired=True,  # sealed segments apply the partner test
            )
        return build_segment(
            words,
            ids,
            layout,
            max_prefix_bits=self.max_prefix_bits,
            use_numba=self.use_numba,
            threads=threads,
        )

    # -- maintenance -------------------------------------------------------------------------

    def _next_task(self) -> _Task | None:
        if self._running is not None:
            return None
        # Merge before sealing more, so the number of sealed segments stays bounded even when
        # the writer keeps the worker busy; a requested merge waits for pending seals instead,
        # so that it takes in the rows they hold.
        if len(self._segments) > self.merge_fanout:
            return _Task(None, self._segments)
        if self._frozen:
            return _Task(self._frozen[0], ())
        if self._merge_wanted and self._segments:
            return _Task(None, self._segments)
        self._merge_wanted = False
        return None

    def _schedule(self) -> None:
        """Run pending maintenance inline, or make sure the worker is running."""
        if self._error is not None:
            return
        if not self.background:
            while (task := self._next_task()) is not None:
                self._start(task)
                try:
                    built = self._execute(task, self.threads)
                except BaseException:
                    self._running = None
                    raise
                self._finish(task, *built)
            return
        if self._worker is None and self._next_task() is not None:
            self._worker = threading.Thread(
                target=self._work, name="pdq-index-maintenance", daemon=True
            )
            self._worker.start()

    def _work(self) -> None:
        while True:
            with self._cond:
                task = self._next_task() if self._error is None else None
                if task is None:
                    self._worker = None
                    self._cond.notify_all()
                    return
                self._start(task)
            try:
                # One thread: the other cores stay with the queries.
                seg, dropped = self._execute(task, 1)
            except BaseException as exc:  # re-raised in the writer by _raise_worker_error
                with self._cond:
                    self._running = None
                    self._error = exc
                    self._worker = None
                    self._cond.notify_all()
                return
            with self._cond:
                self._finish(task, seg, dropped)
                self._cond.notify_all()

    def _start(self, task: _Task) -> None:
        self._running = task
        if task.frozen is None:
            self._merge_wanted = False

    def _execute(self, task: _Task, threads: int) -> tuple[Segment | None, int]:
        """Build the replacement segment (no lock held: the inputs are immutable and the
        tombstones only ever turn off).  Rows already tombstoned are not copied; a segment
        without tombstoned rows lends its rows array as it is (it is never modified)."""
        alive = self._alive
        if task.frozen is not None:
            rows, ids = task.frozen.rows(task.frozen.count)
            parts = [(rows.copy(), ids)]  # not a view into the open segment's buffer
            layout: Layout | None = task.frozen.layout
        else:
            parts = sorted(((s.words, s.ids) for s in task.inputs), key=lambda p: int(p[1][0]))
            layout = None
        total = sum(int(ids.shape[0]) for _, ids in parts)
        kept = []
        for words, ids in parts:
            keep = alive[ids]
            kept.append((words, ids) if keep.all() else (words[keep], ids[keep]))
        kept = [(w, i) for w, i in kept if i.shape[0]]
        dropped = total - sum(int(i.shape[0]) for _, i in kept)
        if not kept:
            return None, dropped
        if len(kept) == 1:
            words, ids = kept[0]
        else:
            words = np.concatenate([w for w, _ in kept])
            ids = np.concatenate([i for _, i in kept])
            # Each part is sorted; only interleaved id ranges need a sort.
            if any(a[1][-1] > b[1][0] for a, b in zip(kept, kept[1:], strict=False)):
                order = np.argsort(ids, kind="stable")
                words, ids = words[order], ids[order]
        return self._build(np.ascontiguousarray(words), ids, layout, threads), dropped

    def _finish(self, task: _Task, seg: Segment | None, dropped: int) -> None:
        new = () if seg is None else (seg,)
        if task.frozen is not None:
            self._frozen.remove(task.frozen)
            self._segments += new
            self._seals += 1
        else:
            self._segments = new + tuple(s for s in self._segments if s not in task.inputs)
            self._merges += 1
        self._reclaimed(dropped)
        self._rebuilt_rows += 0 if seg is None else seg.rows
        self._running = None
        self._publish()

    def _raise_worker_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    # -- snapshots -----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a snapshot directory (see :mod:`federation.index.snapshot`); adds wait."""
        with self._cond:
            view = self._view
            snapshot.write(
                Path(path),
                snapshot.Contents(
                    settings=snapshot.Settings(
                        radius_default=self.radius_default,
                        max_prefix_bits=self.max_prefix_bits,
                        open_capacity=self.open_capacity,
                        merge_fanout=self.merge_fanout,
                    ),
                    next_id=self._next_id,
                    live=self._live,
                    alive=self._alive[: self._next_id],
                    segments=view.segments,
                    opens=tuple(
                        snapshot.OpenRows(
                            o.id_lo, o.capacity, o.layout, o.rows(n)[0], o in self._frozen
                        )
                        for o, n in zip(view.opens, view.counts, strict=True)
                    ),
                ),
                threads=self.threads,
            )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        backend: Backend = "auto",
        threads: int | None = None,
        background: bool = True,
    ) -> PdqIndex:
        """An index restored from :meth:`save`'s directory; raises StorageError if the
        snapshot is missing, corrupt, foreign or of another format version."""
        got = snapshot.read(Path(path), threads=threads or os.cpu_count() or 1)
        s = got.settings
        index = cls(
            s.radius_default,
            backend=backend,
            open_capacity=s.open_capacity,
            max_prefix_bits=s.max_prefix_bits,
            threads=threads,
            background=background,
            merge_fanout=s.merge_fanout,
        )
        with index._cond:
            index._grow_alive(got.next_id)
            index._alive[: got.next_id] = got.alive
            index._next_id = got.next_id
            index._live = got.live
            index._segments = got.segments
            for o in got.opens:
                op = OpenSegment(
                    o.id_lo,
                    o.capacity,
                    o.layout,
                    max_prefix_bits=s.max_prefix_bits,
                    use_numba=index.use_numba,
                )
                op.append(o.words)
                if o.frozen:
                    index._frozen.append(op)
                else:
                    index._open = op
            index._held = sum(seg.rows for seg in got.segments) + sum(
                o.words.shape[0] for o in got.opens
            )
            index._dead_held = index._held - got.live
            index._publish()
            index._schedule()
        return index

    # -- queries ---------------------------------------------------------------------------

    @staticmethod
    def _check_radius(radius: int) -> int:
        if isinstance(radius, bool) or not isinstance(radius, int):
            raise InputError("max_distance must be an integer", code="invalid_radius")
        if not 0 <= radius <= PDQ_MAX_RADIUS:
            raise InputError(
                f"max_distance must be 0..{PDQ_MAX_RADIUS}, got {radius}",
                code="invalid_radius",
                field="max_distance",
            )
        return radius

    def query(self, query: HashInput, max_distance: int | None = None) -> Hits:
        """Every live row within ``max_distance`` (default ``radius_default``) of one hash."""
        return self.query_batch(pdq_words(query), max_distance)[0]

    def query_batch(
        self, queries: HashInput | Sequence[str | bytes], max_distance: int | None = None
    ) -> list[Hits]:
        """:meth:`query` for many hashes: one compiled call per block and segment, blocks
        spread over ``threads`` threads (the kernels release the GIL)."""
        words = pdq_words(queries)
        r = self._check_radius(self.radius_default if max_distance is None else max_distance)
        view = self._view
        n = words.shape[0]
        if n < 2 * self.threads or self.threads == 1:
            qidx, ids, dist = self._search(view, words, r)
        else:
            qidx, ids, dist = self._search_parallel(view, words, r)
        order = np.lexsort((ids, dist, qidx))
        qidx, ids, dist = qidx[order], ids[order], dist[order]
        cuts = np.searchsorted(qidx, np.arange(n + 1)).tolist()
        return [Hits(ids[a:b], dist[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]

    def query_dihedral(
        self, variants: HashInput | Sequence[str | bytes], max_distance: int | None = None
    ) -> Hits:
        """Query with the 8 dihedral hashes of one image; per row keep the best distance and
        the first transform (DIHEDRAL_TRANSFORMS order) that achieves it."""
        words = pdq_words(variants)
        if words.shape[0] != len(DIHEDRAL_TRANSFORMS):
            raise InputError("a dihedral query needs exactly 8 hashes", code="invalid_hash")
        hits = self.query_batch(words, max_distance)
        ids = np.concatenate([h.ids for h in hits])
        dist = np.concatenate([h.distances for h in hits])
        tr = np.concatenate([np.full(len(h), t, dtype=np.int8) for t, h in enumerate(hits)])
        order = np.lexsort((tr, dist, ids))
        ids, dist, tr = ids[order], dist[order], tr[order]
        first = np.ones(ids.shape[0], dtype=np.bool_)
        first[1:] = ids[1:] != ids[:-1]
        ids, dist, tr = ids[first], dist[first], tr[first]
        order = np.lexsort((ids, dist))
        return Hits(ids[order], dist[order], tr[order])

    def _search_parallel(self, view: _View, queries: npt.NDArray[np.uint64], r: int) -> Found:
        """:meth:`_search` over blocks of ``queries`` taken in turn by the calling thread and
        the index's query threads."""
        n = queries.shape[0]
        n_blocks = min(BLOCKS_PER_THREAD * self.threads, max(self.threads, n // MIN_BLOCK))
        cuts = np.linspace(0, n, n_blocks + 1).astype(np.int64).tolist()
        parts: list[Found | None] = [None] * n_blocks
        taken = itertools.count()  # next() is atomic under the GIL

        def drain() -> None:
            while (b := next(taken)) < n_blocks:
                found = self._search(view, queries[cuts[b] : cuts[b + 1]], r)
                parts[b] = (found[0] + cuts[b], found[1], found[2])

        helpers = []
        try:
            pool = self._query_pool()
            helpers = [pool.submit(drain) for _ in range(self.threads - 1)]
        except RuntimeError:  # closed by another thread meanwhile: the caller does it all
            pass
        try:
            drain()
        finally:
            for h in helpers:
                # A helper still queued (behind another batch's) would find no block left:
                # cancel it rather than wait for the batch ahead of it.
                if not h.cancel():
                    h.result()
        done = [p for p in parts if p is not None]
        assert len(done) == n_blocks
        return (
            np.concatenate([p[0] for p in done]),
            np.concatenate([p[1] for p in done]),
            np.concatenate([p[2] for p in done]),
        )

    def _query_pool(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        self.threads - 1, thread_name_prefix="pdq-index-query"
                    )
                    # Shut down when the index is garbage-collected (the threads hold no
                    # reference to it between batches).
                    self._pool_closer = weakref.finalize(self, self._pool.shutdown, False)
                pool = self._pool
        return pool

    def close(self) -> None:
        """Stop the batch-query threads and wait for running maintenance (without raising
        its failure).  The index stays usable: a later batch query starts threads again.
        Dropping the index without closing it stops its query threads too."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
            if self._pool_closer is not None:
                self._pool_closer.detach()
                self._pool_closer = None
        if pool is not None:
            pool.shutdown(wait=True)
        with self._cond:
            while self._worker is not None:
                self._cond.wait()

    def __enter__(self) -> PdqIndex:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _search(self, view: _View, queries: npt.NDArray[np.uint64], r: int) -> Found:
        """All hits of a block of queries as unsorted (query number, id, distance) arrays.

        A segment whose layout cannot answer ``r`` from its tables (radius past its pigeonhole
        bound) is scanned instead, so every row is examined by one of the two exact methods."""
        if not self.use_numba:
            return self._search_numpy(view, queries, r)
        alive, scratch = view.alive, self._buffer
        parts = [
            probe_segment(s, alive, queries, r, scratch)
            if r <= s.layout.max_radius
            else scan_rows(s.words, s.ids_off, s.id_lo, s.rows, alive, queries, r, scratch)
            for s in view.segments
        ]
        parts += [
            o.probe(n, alive, queries, r, scratch)
            if r <= o.layout.max_radius
            else scan_rows(o.words, _NO_IDS, o.id_lo, n, alive, queries, r, scratch)
            for o, n in zip(view.opens, view.counts, strict=True)
            if n
        ]
        if len(parts) == 1:
            return parts[0]
        empty = np.empty(0, dtype=np.int64)
        return (
            np.concatenate([empty] + [p[0] for p in parts]),
            np.concatenate([empty] + [p[1] for p in parts]),
            np.concatenate([empty] + [p[2] for p in parts]),
        )

    def _search_numpy(self, view: _View, queries: npt.NDArray[np.uint64], r: int) -> Found:
        alive = view.alive
        empty = np.empty(0, dtype=np.int64)
        qidx, ids, dist = [empty], [empty], [empty]
        for i in range(queries.shape[0]):
            q = queries[i]
            for s in view.segments:
                if r <= s.layout.max_radius:
                    found = query_segment_numpy(s, alive, q, r)
                else:
                    found = scan_numpy(s.words, s.ids_off, s.id_lo, alive, q, r)
                qidx.append(np.full(found[0].shape[0], i, dtype=np.int64))
                ids.append(found[0])
                dist.append(found[1])
            for o, n in zip(view.opens, view.counts, strict=True):
                if not n:
                    continue
                if r <= o.layout.max_radius:
                    found = o.query_numpy(n, alive, q, r)
                else:
                    found = scan_numpy(o.words[:n], _NO_IDS, o.id_lo, alive, q, r)
                qidx.append(np.full(found[0].shape[0], i, dtype=np.int64))
                ids.append(found[0])
                dist.append(found[1])
        return np.concatenate(qidx), np.concatenate(ids), np.concatenate(dist)

    def _buffer(self, name: str, shape: tuple[int, int]) -> npt.NDArray[np.int64]:
        """A per-thread scratch array reused across queries and batches (allocating ~100 KB
        per query would cost page faults on every call); grown, never shrunk, up to
        :data:`KEEP_BUFFER` columns: a larger one serves the call that needed it and goes."""
        have: npt.NDArray[np.int64] | None = getattr(self._local, name, None)
        if have is None or have.shape[-1] < shape[-1]:
            have = np.empty(shape, dtype=np.int64)
            if shape[-1] <= KEEP_BUFFER:
                setattr(self._local, name, have)
        return have
