"""One immutable multi-index segment: CSR chunk tables over a contiguous range of rows.

A segment covers rows ``[lo, hi)`` of the index's hash array and has its own
:class:`~federation.index.layout.Layout` (bit permutation and chunking, chosen from its rows by
:mod:`federation.index.tuning`).  For each chunk of the permuted row it stores a direct table of
``2**prefix_bits + 1`` offsets over the chunk's top bits, the row numbers sorted by those bits
(uint32 postings) and the chunk's remaining low bits beside them (uint8 or uint16 suffixes).  A
probe reads one offset pair and then filters the bucket on the inline suffix before touching
the 32-byte hash, so the table can stay at ~1M entries per chunk (4 MB, cache friendly) while
the effective chunk width stays 23–32 bits.  No Python object exists per hash.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from federation.index import _kernels
from federation.index.layout import (
    Layout,
    chunk_keys,
    permute_rows,
    popcount,
    popcount_rows,
    prefix_bits_for,
    probe_masks,
)


@dataclass(frozen=True, eq=False)
class Segment:
    """Chunk tables over rows ``[lo, hi)``; immutable once built (tombstones live outside)."""

    lo: int
    """First row covered."""
    hi: int
    """One past the last row covered."""
    layout: Layout
    """Bit permutation and chunking the tables were built with."""
    prefix_bits: int
    """Bits of each chunk resolved by the direct offset table."""
    offsets: npt.NDArray[np.uint32]
    """``(chunks, 2**prefix_bits + 1)`` CSR offsets into postings/suffixes."""
    postings: npt.NDArray[np.uint32]
    """``(chunks, hi - lo)`` absolute row numbers, bucket by bucket."""
    suffixes: npt.NDArray[np.unsignedinteger]
    """``(chunks, hi - lo)`` low chunk bits of each posting (uint8 or uint16)."""

    @property
    def nbytes(self) -> int:
        """Bytes held by the tables."""
        return int(self.offsets.nbytes + self.postings.nbytes + self.suffixes.nbytes)


def build_segment(
    words: npt.NDArray[np.uint64],
    lo: int,
    hi: int,
    layout: Layout,
    *,
    max_prefix_bits: int,
    use_numba: bool,
) -> Segment:
    """Build the chunk tables for rows ``[lo, hi)`` (chunks in parallel threads)."""
    n = hi - lo
    widths, starts = layout.widths, layout.starts
    p = prefix_bits_for(n, widths, max_prefix_bits)
    s_max = max(widths) - p
    suffix_dtype = np.uint8 if s_max <= 8 else np.uint16
    m = len(widths)
    offsets = np.empty((m, (1 << p) + 1), dtype=np.uint32)
    postings = np.empty((m, n), dtype=np.uint32)
    suffixes = np.empty((m, n), dtype=suffix_dtype)
    if layout.identity:
        block = words[lo:hi]
    elif use_numba:
        block = np.empty((n, words.shape[1]), dtype=np.uint64)
        _kernels.permute_all(words, lo, hi, layout.tables, block)
    else:
        block = permute_rows(words[lo:hi], layout)

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
        postings[c] = order + np.uint32(lo)
        suffixes[c] = (keys & np.uint64((1 << s) - 1))[order]

    if n >= 65536:
        with ThreadPoolExecutor() as pool:
            list(pool.map(one, range(m)))
    else:
        for c in range(m):
            one(c)
    return Segment(lo, hi, layout, p, offsets, postings, suffixes)


def query_segment_numpy(
    seg: Segment,
    words: npt.NDArray[np.uint64],
    alive: npt.NDArray[np.bool_],
    q: npt.NDArray[np.uint64],
    radius: int,
    radii: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The numpy twin of ``_kernels.query_segment``: same rows, same distances."""
    masks, weights, n_masks_for = probe_masks(seg.prefix_bits)
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
        near = popcount(seg.suffixes[c, idx] ^ (key & ((1 << s) - 1))) <= limit
        found.append(seg.postings[c, idx[near]])
    if not found:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    rows = np.unique(np.concatenate(found)).astype(np.int64)
    rows = rows[alive[rows]]
    dist = popcount_rows(words[rows] ^ qrow)
    keep = dist <= radius
    return rows[keep], dist[keep]
