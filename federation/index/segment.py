"""One sealed multi-index segment: its own rows and CSR chunk tables over them, immutable.

A segment holds a set of index rows (the 32-byte hashes, and the id of each as an offset from
``id_lo``, ascending) and has its own :class:`~federation.index.layout.Layout` (bit permutation
and chunking, chosen from its rows by :mod:`federation.index.tuning`).  For each chunk of the
permuted row it stores a direct table of ``2**prefix_bits + 1`` offsets over the chunk's top
bits, the local row numbers sorted by those bits (uint32 postings) and an inline suffix beside
them (uint8 or uint16): the chunk's remaining low bits and, in a paired layout, then as many top
bits of the partner chunk's key as fit in 16 (``layout.partner_ranges``).  A probe reads one
offset pair and then filters the bucket on the inline suffix before touching the 32-byte hash,
so the table can stay at ~1M entries per chunk (4 MB, cache friendly) while the effective chunk
width stays 23–32 bits (40–48 for a pair).  No Python object exists per hash.

Owning its rows is what lets the index drop tombstoned rows when it rebuilds segments (their
hash, id and postings are simply not copied) and swap a rebuilt segment in with one assignment.
Tombstones live outside, in the index-wide ``alive`` array indexed by id.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from federation.index import _kernels
from federation.index.layout import (
    Layout,
    chunk_budgets,
    chunk_keys,
    chunk_radii,
    partner_ranges,
    permute_rows,
    popcount,
    popcount_rows,
    prefix_bits_for,
    probe_masks,
)

Found = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]
"""Unsorted hits of a block of queries: (query number, id, distance)."""

Buffer = npt.NDArray[np.int64]

Scratch = Callable[[str, tuple[int, int]], Buffer]
"""Per-thread reusable int64 buffer of at least the given shape, by name."""

SCRATCH_START = 8192
"""Candidates a thread's first probe buffer holds (grown 8x when a query needs more)."""

OUT_START = 256
"""Hits a thread's first output buffer holds, at least (4 per query of the batch)."""

MAX_SEGMENT_ROWS = 2**32 - 1
"""Postings and id offsets are uint32."""


@dataclass(frozen=True, eq=False)
class Segment:
    """Rows and their chunk tables; immutable once built."""

    words: npt.NDArray[np.uint64]
    """``(rows, 4)`` hash words of the rows, in id order."""
    ids_off: npt.NDArray[np.uint32]
    """``(rows,)`` id of each row minus ``id_lo``, strictly increasing."""
    id_lo: int
    """Smallest id held (the base of ``ids_off``)."""
    layout: Layout
    """Bit permutation and chunking the tables were built with."""
    prefix_bits: int
    """Bits of each chunk resolved by the direct offset table."""
    offsets: npt.NDArray[np.uint32]
    """``(chunks, 2**prefix_bits + 1)`` CSR offsets into postings/suffixes."""
    postings: npt.NDArray[np.uint32]
    """``(chunks, rows)`` local row numbers, bucket by bucket."""
    suffixes: npt.NDArray[np.unsignedinteger]
    """``(chunks, rows)`` inline suffix of each posting: its chunk bits below the prefix, shifted
    left past the partner bits that follow them (paired layouts; uint8 or uint16)."""

    @property
    def rows(self) -> int:
        """Rows held."""
        return int(self.words.shape[0])

    @property
    def ids(self) -> npt.NDArray[np.int64]:
        """Id of each row."""
        return self.ids_off.astype(np.int64) + self.id_lo

    @property
    def nbytes(self) -> int:
        """Bytes held: rows, ids and tables."""
        arrays = (self.words, self.ids_off, self.offsets, self.postings, self.suffixes)
        return int(sum(a.nbytes for a in arrays))


def suffix_dtype(layout: Layout, prefix_bits: int) -> type[np.unsignedinteger]:
    """Narrowest dtype holding a chunk's inline suffix: its bits below the prefix, plus partner
    bits up to :data:`~federation.index.layout.SUFFIX_BITS` in a paired layout."""
    if layout.paired:
        return np.uint16
    return np.uint8 if max(layout.widths) - prefix_bits <= 8 else np.uint16


def build_segment(
    words: npt.NDArray[np.uint64],
    ids: npt.NDArray[np.int64],
    layout: Layout,
    *,
    max_prefix_bits: int,
    use_numba: bool,
    threads: int = 1,
) -> Segment:
    """Build a segment owning ``words`` (``(n, 4)``, C-contiguous, not shared) whose rows have
    the strictly increasing ``ids``; chunk tables built on ``threads`` threads."""
    n = words.shape[0]
    if n > MAX_SEGMENT_ROWS or (n and int(ids[-1]) - int(ids[0]) > MAX_SEGMENT_ROWS):
        raise ValueError("a segment holds at most 2**32 - 1 rows and id span")
    id_lo = int(ids[0]) if n else 0
    widths, starts = layout.widths, layout.starts
    p = prefix_bits_for(n, widths, max_prefix_bits)
    m = len(widths)
    offsets = np.empty((m, (1 << p) + 1), dtype=np.uint32)
    postings = np.empty((m, n), dtype=np.uint32)
    suffixes = np.empty((m, n), dtype=suffix_dtype(layout, p))
    if layout.identity:
        block = words
    elif use_numba:
        block = np.empty((n, words.shape[1]), dtype=np.uint64)
        _kernels.permute_all(words, 0, n, layout.tables, block)
    else:
        block = permute_rows(words, layout)

    part_starts, part_widths = partner_ranges(layout, p)

    def one(c: int) -> None:
        width = widths[c]
        s = width - p
        keys = chunk_keys(block, starts[c], width)
        prefix = (keys >> np.uint64(s)).astype(np.uint32)
        if use_numba:
            order = np.empty(n, dtype=np.uint32)
            offsets[c] = _kernels.counting_sort(prefix, 1 << p, order)
        else:
            order = np.argsort(prefix, kind="stable").astype(np.uint32)
            counts = np.bincount(prefix, minlength=1 << p)
            offsets[c, 0] = 0
            np.cumsum(counts, out=offsets[c, 1:])
        postings[c] = order
        pw = int(part_widths[c])
        inline = (keys & np.uint64((1 << s) - 1)) << np.uint64(pw)
        if pw:
            inline |= chunk_keys(block, int(part_starts[c]), pw)
        suffixes[c] = inline[order]

    if threads > 1 and n >= 65536:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(m)))
    else:
        for c in range(m):
            one(c)
    ids_off = (ids - id_lo).astype(np.uint32)
    return Segment(words, ids_off, id_lo, layout, p, offsets, postings, suffixes)


def probe_segment(
    seg: Segment,
    alive: npt.NDArray[np.bool_],
    queries: npt.NDArray[np.uint64],
    r: int,
    scratch_for: Scratch,
) -> Found:
    """Every live row of ``seg`` within ``r`` (≤ its layout's bound) of each query (numba)."""
    masks, weights, n_masks_for = probe_masks(seg.prefix_bits)
    layout = seg.layout
    radii = chunk_radii(r, len(layout.widths))
    budgets = chunk_budgets(r, layout)
    part_starts, part_widths = partner_ranges(layout, seg.prefix_bits)
    starts, widths = layout.arrays
    bounds = scratch_for("bounds", (2, masks.shape[0]))

    def call(scratch: Buffer, out: Buffer, state: Buffer) -> int:
        return int(
            _kernels.query_segment_batch(
                seg.words, seg.ids_off, seg.id_lo, alive, queries, r, radii, starts, widths,
                budgets, part_starts, part_widths, layout.tables, layout.identity,
                seg.prefix_bits, seg.offsets, seg.postings, seg.suffixes, masks, weights,
                n_masks_for, scratch, bounds, out[0], out[1], out[2], state,
            )
        )  # fmt: skip

    return run_batch(call, queries.shape[0], scratch_for)


def run_batch(
    call: Callable[[Buffer, Buffer, Buffer], int], n_queries: int, scratch_for: Scratch
) -> Found:
    """Drive a batch kernel (``_kernels.query_segment_batch`` and its siblings) over the
    per-thread buffers: when a query's candidates or hits do not fit, grow that buffer (keeping
    the hits already found) and resume at that query, so no query is probed twice.  Buffers
    persist per thread, so a thread's next batch starts with the sizes this one needed."""
    state = np.zeros(2, dtype=np.int64)
    scratch = scratch_for("scratch", (2, SCRATCH_START))
    out = scratch_for("out", (3, max(OUT_START, 4 * n_queries)))
    while True:
        status = call(scratch, out, state)
        got = int(state[1])
        if status == 0:
            return out[0, :got].copy(), out[1, :got].copy(), out[2, :got].copy()
        if status == _kernels.FULL_SCRATCH:
            scratch = scratch_for("scratch", (2, scratch.shape[1] * 8))
        else:
            bigger = scratch_for("out", (3, out.shape[1] * 8))
            bigger[:, :got] = out[:, :got]
            out = bigger


def scan_rows(
    words: npt.NDArray[np.uint64],
    ids_off: npt.NDArray[np.uint32],
    id_lo: int,
    hi: int,
    alive: npt.NDArray[np.bool_],
    queries: npt.NDArray[np.uint64],
    r: int,
    scratch_for: Scratch,
) -> Found:
    """Brute force over local rows ``[0, hi)`` (numba); ``ids_off`` empty means consecutive
    ids from ``id_lo``."""

    def call(scratch: Buffer, out: Buffer, state: Buffer) -> int:
        return int(
            _kernels.scan_rows_batch(
                words, ids_off, id_lo, alive, hi, queries, r, out[0], out[1], out[2], state
            )
        )

    return run_batch(call, queries.shape[0], scratch_for)


def ids_at(
    ids_off: npt.NDArray[np.uint32], id_lo: int, rows: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Ids of local ``rows``; an empty ``ids_off`` means consecutive ids from ``id_lo``."""
    if ids_off.shape[0] == 0:
        return rows.astype(np.int64) + id_lo
    return ids_off[rows].astype(np.int64) + id_lo


def scan_numpy(
    words: npt.NDArray[np.uint64],
    ids_off: npt.NDArray[np.uint32],
    id_lo: int,
    alive: npt.NDArray[np.bool_],
    q: npt.NDArray[np.uint64],
    r: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Vectorised brute force over ``words`` in cache-sized blocks (ids as for :func:`ids_at`)."""
    ids_out = [np.empty(0, dtype=np.int64)]
    dist_out = [np.empty(0, dtype=np.int64)]
    for a in range(0, words.shape[0], 1 << 16):
        b = min(words.shape[0], a + (1 << 16))
        d = popcount_rows(words[a:b] ^ q.reshape(1, -1))
        keep = np.flatnonzero(d <= r)
        ids = ids_at(ids_off, id_lo, keep + a)
        live = alive[ids]
        ids_out.append(ids[live])
        dist_out.append(d[keep[live]])
    return np.concatenate(ids_out), np.concatenate(dist_out)


def query_segment_numpy(
    seg: Segment,
    alive: npt.NDArray[np.bool_],
    q: npt.NDArray[np.uint64],
    radius: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The numpy twin of ``_kernels.query_segment``: same ids, same distances."""
    masks, weights, n_masks_for = probe_masks(seg.prefix_bits)
    radii = chunk_radii(radius, len(seg.layout.widths))
    budgets = chunk_budgets(radius, seg.layout)
    part_starts, part_widths = partner_ranges(seg.layout, seg.prefix_bits)
    qrow = q.reshape(1, -1)
    qperm = permute_rows(qrow, seg.layout)
    found: list[npt.NDArray[np.uint32]] = []
    for c, rc in enumerate(radii.tolist()):
        if rc < 0:
            continue
        width = seg.layout.widths[c]
        s = width - seg.prefix_bits
        key = int(chunk_keys(qperm, seg.layout.starts[c], width)[0])
        nm = int(n_masks_for[rc])
        buckets = (masks[:nm] ^ np.uint64(key >> s)).astype(np.int64)
        lo = seg.offsets[c, buckets].astype(np.int64)
        lens = seg.offsets[c, buckets + 1].astype(np.int64) - lo
        total = int(lens.sum())
        if total == 0:
            continue
        starts = np.repeat(lo - (np.cumsum(lens) - lens), lens)
        idx = starts + np.arange(total, dtype=np.int64)
        limit = np.repeat(rc - weights[:nm], lens)
        pw = int(part_widths[c])
        qs = (key & ((1 << s) - 1)) << pw
        if pw:
            qs |= int(chunk_keys(qperm, int(part_starts[c]), pw)[0])
        x = seg.suffixes[c, idx].astype(np.uint64) ^ np.uint64(qs)
        near = popcount(x >> np.uint64(pw)) <= limit
        near &= popcount(x) <= limit + (budgets[c] - rc)
        found.append(seg.postings[c, idx[near]])
    return verify_numpy(seg.words, seg.ids_off, seg.id_lo, alive, found, qrow, radius)


def verify_numpy(
    words: npt.NDArray[np.uint64],
    ids_off: npt.NDArray[np.uint32],
    id_lo: int,
    alive: npt.NDArray[np.bool_],
    found: list[npt.NDArray[np.uint32]],
    qrow: npt.NDArray[np.uint64],
    radius: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Distinct candidate local rows → (id, distance) of the live ones within ``radius``."""
    if not found:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    rows = np.unique(np.concatenate(found)).astype(np.int64)
    ids = ids_at(ids_off, id_lo, rows)
    live = alive[ids]
    rows, ids = rows[live], ids[live]
    dist = popcount_rows(words[rows] ^ qrow)
    keep = dist <= radius
    return ids[keep], dist[keep]
