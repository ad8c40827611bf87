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

Paired chunks (two-level multi-index hashing).  A wide chunk is what keeps candidates few, and a
cheap probe is what keeps buckets few; a paired layout gets both.  Chunks come in pairs
``{a, b}`` (:data:`PAIRED_WIDTHS`, :data:`PAIRED_PARTNERS`); chunk ``a`` is probed on its own
key at radius ``ρ_a`` as usual, and each entry of its buckets also stores up to
:data:`SUFFIX_BITS` bits of its partner ``b``'s key (:func:`partner_ranges`), so the bucket scan
can demand ``d_a + d_b' <= R_ab`` before the row is fetched, where ``d_b'`` is the distance on
those stored bits and ``R_ab = ρ_a + ρ_b + 1`` (:func:`chunk_budgets`).  Exactness: the radii
still satisfy ``sum over chunks (ρ_t + 1) = r + 1`` (:func:`chunk_radii`), and grouping the
chunks by pair, ``sum over pairs (R_ab + 1) = sum (ρ_a + 1) + (ρ_b + 1) = r + 1 > r`` — the
pigeonhole bound over the pairs, which partition the bits.  So a row within ``r`` has a pair
with ``d_a + d_b <= R_ab = ρ_a + ρ_b + 1``, hence ``d_a <= ρ_a`` or ``d_b <= ρ_b`` (otherwise
``d_a + d_b >= ρ_a + ρ_b + 2``); say ``d_a <= ρ_a`` (a chunk probed at ``-1`` cannot be that
one, as ``d_a >= 0``).  Chunk ``a``'s probe reaches the row's bucket and its key test passes,
and its partner test passes because ``d_a + d_b' <= d_a + d_b <= R_ab``.  Every row within
``r`` is thus accepted by some chunk (:func:`accepted_by` spells the rule out).  The paired
layout is also a plain layout: a kernel that ignores the partner test is exact with it (it
checks more candidates).  With ``ρ = (2, 2)`` on 24+24-bit pairs and ``(2, 1)`` on 20+20-bit
pairs (radius 31), a probe costs about what an 11-chunk one does while the pair acts like one
40–48-bit chunk: on 10M pdq-like rows, 1,772 probes and 1,439 candidates per query against 2,131
and 13,077 (11 chunks) or 10,808 and 2,377 (8 chunks).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
import numpy.typing as npt

PDQ_WORDS = 4
"""A PDQ hash is stored as four 64-bit words (its 32 bytes viewed natively)."""

PDQ_BITS = 256
"""Bits in a PDQ hash."""

MAX_CHUNK_RADIUS = 3
"""Largest radius a chunk table is probed at (its mask list holds masks up to this weight)."""

CHUNK_COUNTS: tuple[int, ...] = (11, 8)
"""Chunk counts of the plain layouts a segment may use (see the module docstring)."""

SUFFIX_BITS = 16
"""Bits stored inline beside each posting: the chunk's bits below the prefix, then (paired
layouts) the top bits of the partner's key."""

PAIRED_WIDTHS: tuple[int, ...] = (24, 24, 24, 24, 20, 20, 20, 20, 20, 20, 20, 20)
"""Chunk widths of the paired layout: two pairs of 24-bit chunks, four pairs of 20-bit ones.
In this order :func:`chunk_radii` gives radius 31 the radii ``2`` to the first eight chunks and
``1`` to the last four, so the 24-bit pairs are probed at ``(2, 2)`` and the 20-bit ones at
``(2, 1)``; no chunk is narrower than the 20-bit direct table of a 10M-row segment."""

PAIRED_PARTNERS: tuple[int, ...] = (1, 0, 3, 2, 8, 9, 10, 11, 4, 5, 6, 7)
"""Partner of each chunk of :data:`PAIRED_WIDTHS` (chunk 4 pairs with 8, 5 with 9, ...)."""


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
    partners: tuple[int, ...] = ()
    """Per chunk, the chunk it is paired with, or -1; empty for a plain layout (module
    docstring, "Paired chunks")."""

    @property
    def max_radius(self) -> int:
        """Largest query radius this layout's tables answer."""
        return mih_max_radius(len(self.widths))

    @property
    def paired(self) -> bool:
        """True when some chunk has a partner whose bits its postings may carry."""
        return any(p >= 0 for p in self.partners)


def make_layout(
    order: npt.ArrayLike, widths: tuple[int, ...], partners: tuple[int, ...] = ()
) -> Layout:
    """A :class:`Layout` for a permutation, chunk widths and optional chunk pairs (all
    checked: pairs must be mutual, so they partition the chunks as the bound needs)."""
    perm = np.asarray(order, dtype=np.int64)
    if sorted(perm.tolist()) != list(range(PDQ_BITS)) or sum(widths) != PDQ_BITS:
        raise ValueError("layout must permute all 256 bits and tile them with chunks")
    if max(widths) > 32:
        raise ValueError("chunks are at most 32 bits wide")
    m = len(widths)
    if partners and (
        len(partners) != m
        or any(not -1 <= p < m or p == c for c, p in enumerate(partners))
        or any(p >= 0 and partners[p] != c for c, p in enumerate(partners))
    ):
        raise ValueError("chunk partners must be mutual pairs of distinct chunks")
    partners = partners if any(p >= 0 for p in partners) else ()
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
    return Layout(perm, widths, tables, identity, starts, arrays, tuple(partners))


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


def chunk_budgets(radius: int, layout: Layout) -> npt.NDArray[np.int64]:
    """Per chunk, the bound on key plus stored partner distance its bucket scan may demand:
    ``ρ_a + ρ_b + 1`` for chunk ``a`` paired with ``b`` (the pair's share of the pigeonhole
    bound), ``ρ_a`` for an unpaired chunk; ``-1`` for a chunk not probed (read-only, cached)."""
    return _budgets(radius, len(layout.widths), layout.partners)


@lru_cache(maxsize=1024)
def _budgets(radius: int, n_chunks: int, partners: tuple[int, ...]) -> npt.NDArray[np.int64]:
    # Cached by value, not by layout: a layout holds 256 KB of tables, and tuning scores
    # several per segment.
    radii = chunk_radii(radius, n_chunks)
    budgets = radii.copy()
    for c, partner in enumerate(partners):
        if partner >= 0 and radii[c] >= 0:
            budgets[c] = radii[c] + radii[partner] + 1
    budgets.flags.writeable = False
    return budgets


def partner_ranges(
    layout: Layout, prefix_bits: int, suffix_bits: int = SUFFIX_BITS
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``(starts, widths)`` of the partner bits each chunk's postings carry: the top bits of
    the partner's key (the most informative; see :mod:`federation.index.tuning`), as many as fit
    in ``suffix_bits`` beside the chunk's own bits below the prefix (16 in a CSR segment's
    uint16 suffixes, 32 in an open segment's chain links).  Width 0 for an unpaired chunk.  Any
    subset keeps the search exact (module docstring); more bits reject more candidates before
    their rows are fetched.  Read-only arrays, cached."""
    return _partner_ranges(layout.starts, layout.widths, layout.partners, prefix_bits, suffix_bits)


@lru_cache(maxsize=1024)
def _partner_ranges(
    offsets: tuple[int, ...],
    sizes: tuple[int, ...],
    partners: tuple[int, ...],
    prefix_bits: int,
    suffix_bits: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    m = len(sizes)
    starts = np.zeros(m, dtype=np.int64)
    widths = np.zeros(m, dtype=np.int64)
    for c, partner in enumerate(partners):
        if partner < 0:
            continue
        room = suffix_bits - (sizes[c] - min(prefix_bits, sizes[c]))
        w = max(0, min(sizes[partner], room))
        starts[c] = offsets[partner] + sizes[partner] - w
        widths[c] = w
    starts.flags.writeable = False
    widths.flags.writeable = False
    return starts, widths


def accepted_by(
    layout: Layout,
    words: npt.NDArray[np.uint64],
    query: npt.NDArray[np.uint64],
    radius: int,
    prefix_bits: int,
) -> npt.NDArray[np.int64]:
    """Per row of ``words``, the first chunk whose probe accepts it at ``radius``, or -1.

    Chunk ``c`` accepts a row when its key is within ``ρ_c`` of the query's and, for a paired
    chunk, key distance plus distance on the stored partner bits is within
    :func:`chunk_budgets`.  This is the whole contract of a probe: the bucket walk only finds
    the rows with key distance ``<= ρ_c`` faster.  A search reports each row once, from its
    first accepting chunk; every row within ``radius`` has one (module docstring)."""
    rows = permute_rows(words, layout)
    q = permute_rows(query.reshape(1, -1), layout)
    radii = chunk_radii(radius, len(layout.widths))
    budgets = chunk_budgets(radius, layout)
    part_starts, part_widths = partner_ranges(layout, prefix_bits)
    first = np.full(rows.shape[0], -1, dtype=np.int64)
    for c in reversed(range(len(layout.widths))):
        if radii[c] < 0:
            continue
        start, width = layout.starts[c], layout.widths[c]
        d_key = popcount(chunk_keys(rows, start, width) ^ chunk_keys(q, start, width)[0])
        ok = d_key <= radii[c]
        if part_widths[c]:
            ps, pw = int(part_starts[c]), int(part_widths[c])
            d_part = popcount(chunk_keys(rows, ps, pw) ^ chunk_keys(q, ps, pw)[0])
            ok &= d_key + d_part <= budgets[c]
        first[ok] = c
    return first


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
