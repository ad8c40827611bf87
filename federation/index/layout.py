"""How the PDQ index cuts a 256-bit hash into chunks, and which radius each chunk is probed at.

Multi-index hashing (Norouzi, Punjani & Fleet, "Fast Search in Hamming Space with Multi-Index
Hashing", CVPR 2012) rests on a pigeonhole bound: if the 256 bits are split into disjoint chunks
and a hash is within distance ``r`` of the query, then its per-chunk distances ``d_i`` sum to at
most ``r``, so for any per-chunk radii with ``sum(r_i + 1) > r`` at least one chunk has
``d_i <= r_i`` (otherwise ``sum d_i >= sum(r_i + 1) > r``).  Probing every chunk's table at its
radius therefore finds *every* neighbour: the search is exact, not approximate.  A chunk can be
left out (``r_i = -1``), which adds nothing to the sum — that is how small radii get cheap.

The bound holds for *any* partition of the bit positions, so a segment may first apply a fixed
permutation of the 256 positions (:class:`Layout`) to its rows and to every query: Hamming
distance is invariant under a permutation applied to both sides, and the chunks are then
contiguous ranges of the permuted row.  :mod:`federation.index.tuning` picks the permutation and
the number of chunks from the data (skewed bits make contiguous chunks carry little entropy).

Two chunk counts are offered: eleven chunks of 23–24 bits probed at radius ≤ 2 (``11 * 3 = 33 >
32`` units; best on high-entropy data) and eight chunks of 32 bits probed at radius ≤ 3
(``8 * 4 = 32 > 31``; fewer, wider chunks cut candidates on skewed data at the price of more
probes).  Tables hold masks up to :data:`MAX_CHUNK_RADIUS`, so eleven chunks answer radius 43
and eight answer 31 from the tables; larger radii scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

PDQ_WORDS = 4
"""A PDQ hash is stored as four 64-bit words (its 32 bytes viewed natively)."""

PDQ_BITS = 256
"""Bits in a PDQ hash."""

MAX_CHUNK_RADIUS = 3
"""Largest radius a chunk table is probed at (its mask list holds masks up to this weight)."""

CHUNK_COUNTS: tuple[int, ...] = (11, 8)
"""Chunk counts a segment may use (see the module docstring)."""


def chunk_widths(n_chunks: int) -> tuple[int, ...]:
    """Widths of ``n_chunks`` near-equal chunks tiling 256 bits, wider ones first."""
    base, extra = divmod(PDQ_BITS, n_chunks)
    return tuple(base + (1 if i < extra else 0) for i in range(n_chunks))


def mih_max_radius(n_chunks: int) -> int:
    """Largest query radius ``n_chunks`` chunk tables answer exactly (pigeonhole bound)."""
    return n_chunks * (MAX_CHUNK_RADIUS + 1) - 1


MIH_MAX_RADIUS = max(mih_max_radius(m) for m in CHUNK_COUNTS)
"""Largest query radius any layout answers from its tables; beyond a layout's own bound the
index scans that segment's rows."""


@dataclass(frozen=True, eq=False)
class Layout:
    """A bit permutation and a chunking of the permuted 256 bits (chunks contiguous)."""

    order: npt.NDArray[np.int64]
    """``order[i]`` is the original bit position that becomes permuted bit ``i``."""
    widths: tuple[int, ...]
    """Chunk widths in permuted bit order; they tile all 256 bits."""
    tables: npt.NDArray[np.uint64]
    """``(32, 256, 4)``: for hash byte ``b`` with value ``v``, its bits' permuted positions."""
    identity: bool
    """True when the permutation is the identity (rows are used as they are)."""
    starts: tuple[int, ...]
    """First permuted bit of each chunk."""
    arrays: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]
    """``(starts, widths)`` as int64 arrays, as the compiled kernels take them."""

    @property
    def max_radius(self) -> int:
        """Largest query radius this layout's tables answer."""
        return mih_max_radius(len(self.widths))


def make_layout(order: npt.ArrayLike, widths: tuple[int, ...]) -> Layout:
    """A :class:`Layout` for a permutation and chunk widths (both checked)."""
    perm = np.asarray(order, dtype=np.int64)
    if sorted(perm.tolist()) != list(range(PDQ_BITS)) or sum(widths) != PDQ_BITS:
        raise ValueError("layout must permute all 256 bits and tile them with chunks")
    if max(widths) > 32:
        raise ValueError("chunks are at most 32 bits wide")
    dest = np.empty(PDQ_BITS, dtype=np.int64)
    dest[perm] = np.arange(PDQ_BITS)
    tables = np.zeros((PDQ_BITS // 8, 256, PDQ_WORDS), dtype=np.uint64)
    values = np.arange(256)
    for src in range(PDQ_BITS):
        byte, bit = divmod(src, 8)
        word, sh = divmod(int(dest[src]), 64)
        hit = (values >> bit) & 1 == 1
        tables[byte, hit, word] |= np.uint64(1) << np.uint64(sh)
    perm.flags.writeable = False
    tables.flags.writeable = False
    starts = tuple(sum(widths[:i]) for i in range(len(widths)))
    arrays = (np.array(starts, dtype=np.int64), np.array(widths, dtype=np.int64))
    identity = bool((perm == np.arange(PDQ_BITS)).all())
    return Layout(perm, widths, tables, identity, starts, arrays)


@cache
def default_layout(n_chunks: int = CHUNK_COUNTS[0]) -> Layout:
    """Identity permutation, contiguous near-equal chunks."""
    return make_layout(np.arange(PDQ_BITS), chunk_widths(n_chunks))


def permute_rows(words: npt.NDArray[np.uint64], layout: Layout) -> npt.NDArray[np.uint64]:
    """Rows of an ``(n, 4)`` word array with their bits moved to permuted positions."""
    if layout.identity:
        return words
    as_bytes = np.ascontiguousarray(words).view(np.uint8).reshape(words.shape[0], -1)
    out = np.zeros_like(words)
    for b in range(as_bytes.shape[1]):
        out |= layout.tables[b][as_bytes[:, b]]
    return out


@cache
def chunk_radii(radius: int, n_chunks: int = CHUNK_COUNTS[0]) -> npt.NDArray[np.int64]:
    """Per-chunk probe radii for a query radius: the cheapest allocation with
    ``sum(r_i + 1) == radius + 1``, so the pigeonhole bound holds with nothing to spare.

    Units are handed out round-robin so every chunk reaches radius 0 before any reaches 1: a
    radius-0 probe is one bucket, so small query radii cost almost nothing.
    """
    if not 0 <= radius <= mih_max_radius(n_chunks):
        raise ValueError(f"radius {radius} outside 0..{mih_max_radius(n_chunks)}")
    radii = np.full(n_chunks, -1, dtype=np.int64)
    units = radius + 1
    while units:
        for c in range(n_chunks):
            if not units:
                break
            radii[c] += 1
            units -= 1
    radii.flags.writeable = False
    return radii


@cache
def probe_masks(
    prefix_bits: int,
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """XOR masks over ``prefix_bits`` bits with weight ≤ MAX_CHUNK_RADIUS, ordered by weight.

    Returns ``(masks, weights, n_masks_for)`` where the first ``n_masks_for[k]`` masks are
    exactly those of weight ≤ k, so a probe at radius k walks a prefix of one array.
    """
    masks: list[int] = [0]
    for k in range(1, MAX_CHUNK_RADIUS + 1):
        masks += _weight_k(prefix_bits, k)
    weights = [m.bit_count() for m in masks]
    counts = [sum(1 for w in weights if w <= k) for k in range(MAX_CHUNK_RADIUS + 1)]
    return (
        np.array(masks, dtype=np.uint64),
        np.array(weights, dtype=np.int64),
        np.array(counts, dtype=np.int64),
    )


def _weight_k(bits: int, k: int) -> list[int]:
    """All ``bits``-bit masks of weight ``k`` (k ≤ 3), as combinations of set positions."""
    if k == 0:
        return [0]
    out: list[int] = []
    for top in range(k - 1, bits):
        out += [(1 << top) | m for m in _weight_k(top, k - 1)]
    return out


def prefix_bits_for(n_rows: int, widths: tuple[int, ...], max_prefix_bits: int) -> int:
    """Direct-table bits for a segment of ``n_rows``: about one row per bucket, bounded so the
    table stays small (≤ 2**max_prefix_bits entries) and the stored suffix fits 16 bits."""
    want = max(1, n_rows).bit_length() - 1
    low = max(widths) - 16
    return int(min(max(want, low), max(max_prefix_bits, low), min(widths)))


def chunk_keys(words: npt.NDArray[np.uint64], start: int, width: int) -> npt.NDArray[np.uint64]:
    """Bits ``[start, start + width)`` of every row of an ``(n, 4)`` word array."""
    w, sh = divmod(start, 64)
    v = words[:, w] >> np.uint64(sh)
    if sh + width > 64:
        v |= words[:, w + 1] << np.uint64(64 - sh)
    v &= np.uint64((1 << width) - 1)
    return v


def popcount_rows(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """Set bits per row of an ``(n, k)`` uint64 array (numpy ≥ 2 has a ufunc; else a table)."""
    if hasattr(np, "bitwise_count"):
        counts: npt.NDArray[np.int64] = np.bitwise_count(x).sum(axis=1, dtype=np.int64)
        return counts
    as_bytes = np.ascontiguousarray(x).view(np.uint8).reshape(x.shape[0], -1)  # pragma: no cover
    table: npt.NDArray[np.int64] = _BYTE_POP[as_bytes].sum(axis=1, dtype=np.int64)
    return table  # pragma: no cover


def popcount(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """Set bits of each element of a 1-D unsigned array."""
    return popcount_rows(x.astype(np.uint64).reshape(-1, 1))


_BYTE_POP = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)
