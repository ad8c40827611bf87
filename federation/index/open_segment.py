"""The open segment: the index's mutable tail, where new rows land and match at once.

An open segment has a fixed capacity, ids ``id_lo, id_lo + 1, ...`` in arrival order, and the
same chunk tables as a sealed :class:`~federation.index.segment.Segment` except that each bucket
is a chain instead of a sorted run: ``head[c, b]`` is 1 + the newest row in bucket ``b`` of
chunk ``c`` (0: empty) and ``link[c, row]`` packs the row's inline suffix (high 32 bits) with
1 + the next older row of its bucket (low 32 bits), one 8-byte load per chain step.  The suffix
is the chunk's bits below the prefix and, in a paired layout, then partner bits as in a sealed
segment (``layout.partner_ranges``), only more of them: 32 bits of room instead of 16, which
holds a 20- or 24-bit partner's whole key at the usual prefix widths.  Appending
a row therefore costs O(chunks) — write its hash and one link per chunk, move one head per
chunk — and queries use the same exact pigeonhole probe as sealed segments, with the layout the
segment was opened with.  When full it is frozen (no more appends) and later sealed into a CSR
segment, which queries faster.

Arrays are allocated at full capacity on the first append with ``np.zeros``, which the C
library serves with fresh, lazily committed pages: memory grows with the rows actually written
and nothing is ever copied to grow.  Ids are consecutive, so none are stored.

Concurrency: one writer appends; any number of readers query concurrently without a lock.
A reader passes the row count of its snapshot (``n_vis``); rows appended later may appear in
chains it walks, and are stepped over.  The writer links new rows before moving any head (see
``_kernels.open_append``), so every chain a reader walks is complete.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from federation.index import _kernels
from federation.index.layout import (
    PDQ_WORDS,
    Layout,
    chunk_budgets,
    chunk_keys,
    chunk_radii,
    partner_ranges,
    permute_rows,
    popcount,
    prefix_bits_for,
    probe_masks,
)
from federation.index.segment import Buffer, Found, Scratch, run_batch, verify_numpy

_NO_IDS = np.empty(0, dtype=np.uint32)
"""``ids_off`` of an open segment: empty means consecutive ids."""

_LOW32 = np.uint64(0xFFFFFFFF)

LINK_SUFFIX_BITS = 32
"""Room for the inline suffix in a chain link (its high half)."""

SMALL_APPEND = 64
"""Appends of at most this many rows run compiled without releasing the GIL (microseconds;
see ``_kernels._jit_holding_gil``)."""


class OpenSegment:
    """Append-only rows with chained chunk tables (one writer, lock-free readers)."""

    def __init__(
        self, id_lo: int, capacity: int, layout: Layout, *, max_prefix_bits: int, use_numba: bool
    ) -> None:
        if not 0 < capacity < 2**32 - 1:
            raise ValueError("open segment capacity must be in 1 .. 2**32 - 2")
        self.id_lo = id_lo
        self.capacity = capacity
        self.layout = layout
        # Sized for four times the capacity: a chain step is a dependent, usually missing
        # load (a sealed bucket is one contiguous run), so buckets are kept sparse.
        self.prefix_bits = prefix_bits_for(4 * capacity, layout.widths, max_prefix_bits)
        self.part_starts, self.part_widths = partner_ranges(
            layout, self.prefix_bits, LINK_SUFFIX_BITS
        )
        self.use_numba = use_numba
        self.count = 0
        """Rows appended (the writer's view; readers use their snapshot's count)."""
        m = len(layout.widths)
        self.words = np.zeros((0, PDQ_WORDS), dtype=np.uint64)
        self.head = np.zeros((m, 0), dtype=np.uint32)
        self.link = np.zeros((m, 0), dtype=np.uint64)

    @property
    def room(self) -> int:
        """Rows that can still be appended."""
        return self.capacity - self.count

    @property
    def nbytes(self) -> int:
        """Bytes committed: the head tables once allocated, and the rows written so far."""
        if self.words.shape[0] == 0:
            return 0
        per_row = self.words.itemsize * PDQ_WORDS + self.link.itemsize * self.link.shape[0]
        return int(self.head.nbytes + per_row * self.count)

    def append(self, rows: npt.NDArray[np.uint64]) -> None:
        """Store and link ``rows`` (at most :attr:`room`); the caller publishes the new count."""
        k = rows.shape[0]
        if k > self.room:
            raise ValueError("open segment overflow")
        if k == 0:
            return
        if self.words.shape[0] == 0:
            m = len(self.layout.widths)
            self.head = np.zeros((m, (1 << self.prefix_bits)), dtype=np.uint32)
            self.link = np.zeros((m, self.capacity), dtype=np.uint64)
            self.words = np.zeros((self.capacity, PDQ_WORDS), dtype=np.uint64)
        base = self.count
        self.words[base : base + k] = rows
        starts, widths = self.layout.arrays
        if self.use_numba:
            small = k <= SMALL_APPEND
            perm = rows
            if not self.layout.identity:
                perm = np.empty_like(rows)
                permute = _kernels.permute_all_small if small else _kernels.permute_all
                permute(rows, 0, k, self.layout.tables, perm)
            buckets = np.empty((len(widths), k), dtype=np.int64)
            link = _kernels.open_append_small if small else _kernels.open_append
            link(
                perm, base, starts, widths, self.part_starts, self.part_widths,
                self.prefix_bits, self.head, self.link, buckets,
            )  # fmt: skip
        else:
            self._append_numpy(permute_rows(rows, self.layout), base)
        self.count += k

    def _append_numpy(self, perm: npt.NDArray[np.uint64], base: int) -> None:
        """The numpy twin of ``_kernels.open_append`` (links first, then heads).  Readers on
        this path hold the GIL between numpy calls, whose hand-offs order the writes."""
        k = perm.shape[0]
        moves = []
        for c, (start, width) in enumerate(
            zip(self.layout.starts, self.layout.widths, strict=True)
        ):
            s = width - self.prefix_bits
            keys = chunk_keys(perm, start, width)
            suffix = self._inline(perm, c, keys, s)
            buckets = (keys >> np.uint64(s)).astype(np.int64)
            order = np.argsort(buckets, kind="stable")
            ob = buckets[order]
            first = np.ones(k, dtype=np.bool_)
            first[1:] = ob[1:] != ob[:-1]
            prev = np.empty(k, dtype=np.uint64)
            prev[first] = self.head[c, ob[first]]
            later = np.flatnonzero(~first)
            prev[later] = (base + order[later - 1] + 1).astype(np.uint64)
            self.link[c, base + order] = (suffix[order] << np.uint64(32)) | prev
            last = np.ones(k, dtype=np.bool_)
            last[:-1] = ob[1:] != ob[:-1]
            moves.append((ob[last], (base + order[last] + 1).astype(np.uint32)))
        for c, (buckets_c, rows_c) in enumerate(moves):
            self.head[c, buckets_c] = rows_c

    def _inline(
        self, perm: npt.NDArray[np.uint64], c: int, keys: npt.NDArray[np.uint64], s: int
    ) -> npt.NDArray[np.uint64]:
        """Inline suffixes of chunk ``c`` for permuted rows ``perm`` with chunk ``keys``."""
        pw = int(self.part_widths[c])
        inline = (keys & np.uint64((1 << s) - 1)) << np.uint64(pw)
        if pw:
            inline |= chunk_keys(perm, int(self.part_starts[c]), pw)
        return inline

    def rows(self, n: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
        """Words and ids of the first ``n`` rows (a view of the words, not a copy)."""
        return self.words[:n], np.arange(self.id_lo, self.id_lo + n, dtype=np.int64)

    def probe(
        self,
        n_vis: int,
        alive: npt.NDArray[np.bool_],
        queries: npt.NDArray[np.uint64],
        r: int,
        scratch_for: Scratch,
    ) -> Found:
        """Every live row among the first ``n_vis`` within ``r`` (≤ the layout's bound) of each
        query (numba)."""
        masks, weights, n_masks_for = probe_masks(self.prefix_bits)
        layout = self.layout
        radii = chunk_radii(r, len(layout.widths))
        budgets = chunk_budgets(r, layout)
        starts, widths = layout.arrays
        bounds = scratch_for("bounds", (2, masks.shape[0]))

        def call(scratch: Buffer, out: Buffer, state: Buffer) -> int:
            return int(
                _kernels.query_open_batch(
                    self.words, self.id_lo, alive, n_vis, queries, r, radii, starts, widths,
                    budgets, self.part_starts, self.part_widths, layout.tables,
                    layout.identity, self.prefix_bits, self.head, self.link, masks, weights,
                    n_masks_for, scratch, bounds, out[0], out[1], out[2], state,
                )
            )  # fmt: skip

        return run_batch(call, queries.shape[0], scratch_for)

    def query_numpy(
        self, n_vis: int, alive: npt.NDArray[np.bool_], q: npt.NDArray[np.uint64], radius: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The numpy twin of ``_kernels.query_open``: all probed chains are walked one step
        per round, as arrays."""
        masks, weights, n_masks_for = probe_masks(self.prefix_bits)
        radii = chunk_radii(radius, len(self.layout.widths))
        budgets = chunk_budgets(radius, self.layout)
        qrow = q.reshape(1, -1)
        qperm = permute_rows(qrow, self.layout)
        found: list[npt.NDArray[np.uint32]] = []
        for c, rc in enumerate(radii.tolist()):
            if rc < 0:
                continue
            width = self.layout.widths[c]
            s = width - self.prefix_bits
            key_arr = chunk_keys(qperm, self.layout.starts[c], width)
            key = int(key_arr[0])
            qs = self._inline(qperm, c, key_arr, s)[0]
            pw = np.uint64(self.part_widths[c])
            nm = int(n_masks_for[rc])
            cur = self.head[c, (masks[:nm] ^ np.uint64(key >> s)).astype(np.int64)]
            limit = rc - weights[:nm]
            while True:
                step = cur != 0
                cur, limit = cur[step], limit[step]
                if cur.shape[0] == 0:
                    break
                row = cur.astype(np.int64) - 1
                entry = self.link[c, row]
                x = (entry >> np.uint64(32)) ^ qs
                near = (popcount(x >> pw) <= limit) & (popcount(x) <= limit + (budgets[c] - rc))
                found.append(row[(row < n_vis) & near].astype(np.uint32))
                cur = entry & _LOW32
        return verify_numpy(self.words, _NO_IDS, self.id_lo, alive, found, qrow, radius)
