"""Choosing a segment's :class:`~federation.index.layout.Layout` from the rows it will hold.

Multi-index hashing is fast when every chunk carries close to its width in entropy: a probe at
radius ``ρ`` then returns about ``n * V(w, ρ) / 2**w`` rows.  Real collections are skewed —
biased and correlated bits, families of near-duplicates — and a chunk made of low-entropy or
mutually correlated bits returns a large share of the collection.  Exactness does not depend on
which bits form a chunk (see :mod:`federation.index.layout`), so the choice is free to follow
the data:

1. Bits are dealt to chunks greedily so that random pairs of rows collide as little as possible
   *per chunk*, correlations included (:func:`correlated_layout`): each pair of a sample of row
   pairs carries a weight per chunk, halved whenever the chunk gains a bit on which the pair
   differs, so ``sum(weights) = sum over pairs of 2**-d_chunk`` — a smooth stand-in for "pairs
   whose chunk distance stays within the probe radius", which is what a query pays for.  The
   chunk with the most weight left picks the bit that removes most of it.  A bit correlated
   with bits already in the chunk removes little (the pairs it separates are mostly separated
   already) and goes elsewhere; per-bit entropy cannot see that.  On the pdq-like benchmark set
   (16 latent factors behind the 256 bits) this cut candidates per query by 30% (11 chunks)
   and 20% (8 chunks) against entropy balancing, measured on 10M rows; on independent bits
   (uniform, the harsh clustered set) the two are equal, and on some factor models entropy
   balancing was a few percent better — so both are offered and step 3 decides.  Segments
   under :data:`GREEDY_MIN_ROWS` rows only get entropy balancing (:func:`balanced_layout`).
2. Inside a chunk the bits picked first — the most separating — are the top (prefix) bits of
   the chunk key, so direct-table buckets are as even as the chunk allows.
3. For each offered layout (chunk count and allocation) the work of a query at the index's
   default radius is estimated on the sample (:func:`query_work`): bucket probes, bucket
   entries scanned with the inline suffix test, and candidates verified against the full hash,
   each weighted by its measured cost; the cheapest layout wins.

Everything is a pure function of the sample (fixed seeds), so two nodes with the same rows
build the same tables.
"""

from __future__ import annotations

from math import comb

import numpy as np
import numpy.typing as npt

from federation.index import _kernels
from federation.index.layout import (
    CHUNK_COUNTS,
    PAIRED_PARTNERS,
    PAIRED_WIDTHS,
    Layout,
    chunk_budgets,
    chunk_keys,
    chunk_radii,
    chunk_widths,
    default_layout,
    make_layout,
    mih_max_radius,
    partner_ranges,
    permute_rows,
    popcount,
    popcount_rows,
    prefix_bits_for,
)

SAMPLE_ROWS = 8192
"""Rows sampled to estimate bit statistics and query work."""

SAMPLE_QUERIES = 64
"""Sample rows used as queries when estimating query work."""

PAIR_SAMPLES = 8192
"""Row pairs the greedy allocation scores bits on (16k pairs were within noise of 8k on the
pdq-like set and take twice as long; 4k were measurably worse)."""

GREEDY_MIN_ROWS = 1 << 19
"""Segments with fewer rows get the entropy-balanced layout: the greedy allocation costs
0.1–0.2 s per chunk count in numpy (256 rounds of popcounts over the pair sample; ~20 ms
compiled), noise next to building half a million rows or more, not next to a small bulk add."""

PROBE_COST = 1.0
"""Cost of one bucket probe relative to verifying one candidate.  Measured at 10M rows: a probe
(two offsets and the start of a bucket, mostly cache misses) ≈ 45 ns, a candidate (a random
32-byte row, a cache miss when many are in flight) ≈ 45 ns, a bucket entry scanned ≈ 1 ns."""

ENTRY_COST = 0.02
"""Cost of one bucket entry's inline suffix test relative to verifying one candidate."""


def bit_entropy(sample: npt.NDArray[np.uint64]) -> npt.NDArray[np.float64]:
    """Collision entropy ``-log2(1 - 2p(1-p))`` of each of the 256 bits over ``sample``."""
    bits = np.unpackbits(np.ascontiguousarray(sample).view(np.uint8), axis=1, bitorder="little")
    p = bits.mean(axis=0, dtype=np.float64)
    delta = 2 * p * (1 - p)
    ent: npt.NDArray[np.float64] = -np.log2(np.maximum(1 - delta, 1e-12))
    return ent


def balanced_layout(
    entropy: npt.NDArray[np.float64],
    chunks: int | tuple[int, ...],
    partners: tuple[int, ...] = (),
) -> Layout:
    """Deal bits to ``chunks`` (a count of near-equal chunks, or their widths) so every chunk
    gets a similar total entropy (correlation between bits is ignored; see
    :func:`correlated_layout`)."""
    widths = chunk_widths(chunks) if isinstance(chunks, int) else chunks
    n_chunks = len(widths)
    members: list[list[int]] = [[] for _ in widths]
    total = np.zeros(n_chunks)
    # Stable order (ties by bit position) keeps the layout a pure function of the sample.
    for bit in np.argsort(-entropy, kind="stable").tolist():
        free = [c for c in range(n_chunks) if len(members[c]) < widths[c]]
        c = min(free, key=lambda k: (total[k], k))
        members[c].append(bit)
        total[c] += entropy[bit]
    # Most informative bits last, so they are the top (prefix) bits of the chunk key.
    order = [b for chunk in members for b in reversed(chunk)]
    return make_layout(order, widths, partners)


def pair_differences(
    sample: npt.NDArray[np.uint64], n_pairs: int = PAIR_SAMPLES, seed: int = 0
) -> npt.NDArray[np.bool_]:
    """``(n_pairs, 256)``: True where a random pair of distinct sample rows differs."""
    n = int(sample.shape[0])
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, n_pairs)
    j = (i + 1 + rng.integers(0, n - 1, n_pairs)) % n  # never i itself
    x = np.ascontiguousarray(sample[i] ^ sample[j])
    bits = np.unpackbits(x.view(np.uint8), axis=1, bitorder="little")
    return bits.astype(np.bool_)


def correlated_layout(
    diffs: npt.NDArray[np.bool_],
    chunks: int | tuple[int, ...],
    partners: tuple[int, ...] = (),
) -> Layout:
    """Greedy bit allocation minimising per-chunk pair collisions (module docstring, step 1).

    ``level[c, p]`` is pair ``p``'s distance on chunk ``c``'s bits so far (its weight is
    ``2**-level``); ``gain[c, b]`` is the weight bit ``b`` would remove from chunk ``c`` — half
    the weight of the pairs differing on ``b``.  After a pick, the pairs it separates are
    grouped by level and their effect on ``gain`` counted with popcounts over bit-packed pair
    sets: exact (weights are powers of two) and, unlike a float matrix-vector product, never
    handed to a multi-threaded BLAS, which stalls when the cores are busy (15x slower measured
    on a loaded 2-core machine).  Pairs past :data:`_MAX_LEVEL` weigh nothing more.
    ``chunks`` is a count of near-equal chunks or their widths.  With numba the same picks are
    made by ``_kernels.greedy_chunks`` without holding the GIL (:func:`greedy_members`).
    """
    widths = chunk_widths(chunks) if isinstance(chunks, int) else chunks
    members = greedy_members(diffs, widths, compiled=_kernels.HAVE_NUMBA)
    # First picks (most separating) last, so they are the top (prefix) bits of the chunk key
    # and, in a paired layout, the partner bits its partner's postings carry.
    order = [b for chunk in members for b in reversed(chunk)]
    return make_layout(order, widths, partners)


def greedy_members(
    diffs: npt.NDArray[np.bool_], widths: tuple[int, ...], *, compiled: bool
) -> list[list[int]]:
    """Each chunk's bits in pick order (:func:`correlated_layout`), compiled or in numpy (the
    two agree exactly; the tests hold them to it)."""
    if compiled:
        picked = np.full((len(widths), max(widths)), -1, dtype=np.int64)
        diffs_t = np.ascontiguousarray(diffs.T)
        _kernels.greedy_chunks(diffs_t, np.array(widths, dtype=np.int64), _MAX_LEVEL, picked)
        return [picked[c, :w].tolist() for c, w in enumerate(widths)]
    n_chunks = len(widths)
    n_pairs, n_bits = diffs.shape
    by_bit = np.ascontiguousarray(np.packbits(diffs.T, axis=1, bitorder="little"))
    by_bit_words = by_bit.view(np.uint64) if n_pairs % 64 == 0 else None
    scale = np.ldexp(1.0, -np.arange(_MAX_LEVEL + 2))
    level = np.zeros((n_chunks, n_pairs), dtype=np.int8)
    gain = np.tile(diffs.sum(axis=0, dtype=np.float64), (n_chunks, 1))
    left = np.full(n_chunks, float(n_pairs))
    free = np.ones(n_bits, dtype=np.bool_)
    members: list[list[int]] = [[] for _ in widths]
    for _ in range(n_bits):
        c = max(
            (k for k in range(n_chunks) if len(members[k]) < widths[k]),
            key=lambda k: (left[k], -k),
        )
        bit = int(np.argmax(np.where(free, gain[c], -np.inf)))
        members[c].append(bit)
        free[bit] = False
        lv = level[c]
        hit = diffs[:, bit] & (lv < _MAX_LEVEL)
        if hit.any():
            for d in range(int(lv[hit].min()), int(lv[hit].max()) + 1):
                packed = np.packbits(hit & (lv == d), bitorder="little")
                if by_bit_words is not None:
                    common = popcount_rows(by_bit_words & packed.view(np.uint64))
                else:  # pragma: no cover - PAIR_SAMPLES is a multiple of 64
                    common = _BYTE_BITS[by_bit & packed].sum(axis=1)
                gain[c] -= common * scale[d + 1]
            lv[hit] += 1
        left[c] = float(scale[lv].sum())
    return members


_MAX_LEVEL = 24
"""Pairs this far apart on a chunk (weight 2**-24) stop counting."""

_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def _probes(prefix_bits: int, radii: npt.NDArray[np.int64]) -> int:
    return sum(
        sum(comb(prefix_bits, k) for k in range(int(rc) + 1)) for rc in radii.tolist() if rc >= 0
    )


def query_work(
    sample: npt.NDArray[np.uint64],
    layout: Layout,
    radius: int,
    n_rows: int,
    prefix_bits: int,
    *,
    compiled: bool = _kernels.HAVE_NUMBA,
) -> float:
    """Estimated cost of one query on a segment of ``n_rows`` like ``sample``, in candidate
    verifications: candidates and bucket entries are measured with sample rows as queries
    against the sample (a row found by two chunks counts twice, as it costs twice) and scaled
    to ``n_rows``; probes are counted exactly.  A paired layout's candidates are the entries
    that also pass the partner test (:func:`~federation.index.layout.accepted_by`).  Counted by
    ``_kernels.count_work`` (no GIL held) when ``compiled``, else in numpy: the same counts."""
    rows = permute_rows(sample, layout)
    radii = chunk_radii(radius, len(layout.widths))
    budgets = chunk_budgets(radius, layout)
    part_starts, part_widths = partner_ranges(layout, prefix_bits)
    queries = rows[:SAMPLE_QUERIES]
    entries = candidates = 0
    for c, (start, width) in enumerate(zip(layout.starts, layout.widths, strict=True)):
        rc = int(radii[c])
        if rc < 0:
            continue
        keys = chunk_keys(rows, start, width)
        q_keys = chunk_keys(queries, start, width)
        ps, pw = int(part_starts[c]), int(part_widths[c])
        part, q_part = chunk_keys(rows, ps, pw), chunk_keys(queries, ps, pw)
        shift = width - min(prefix_bits, width)
        if compiled:
            got = _kernels.count_work(
                keys, part, q_keys, q_part, rc, int(budgets[c]), shift, pw > 0
            )
            candidates += int(got[0])
            entries += int(got[1])
            continue
        for q, qp in zip(q_keys.tolist(), q_part.tolist(), strict=True):
            dist = popcount(keys ^ np.uint64(q))
            near = popcount((keys ^ np.uint64(q)) >> np.uint64(shift))
            ok = dist <= rc
            if pw:
                ok &= dist + popcount(part ^ np.uint64(qp)) <= budgets[c]
            candidates += int(ok.sum()) - 1  # minus the query row itself
            entries += int((near <= rc).sum()) - 1
    pairs = int(queries.shape[0]) * max(1, int(rows.shape[0]) - 1)
    scale = n_rows / pairs
    probes = _probes(min(prefix_bits, min(layout.widths)), radii)
    return candidates * scale + ENTRY_COST * entries * scale + PROBE_COST * probes


def choose_layout(
    sample: npt.NDArray[np.uint64],
    n_rows: int,
    radius: int,
    max_prefix_bits: int,
    *,
    paired: bool = False,
) -> Layout:
    """The layout with the least estimated query work for a segment of ``n_rows``: each offered
    chunk count with entropy-balanced bits and, for segments of :data:`GREEDY_MIN_ROWS` rows or
    more, with the greedy allocation too (it usually wins on correlated bits, but the pair
    weights are a stand-in for the real cost, so the estimate decides).

    ``paired`` offers the paired layout (:data:`~federation.index.layout.PAIRED_WIDTHS`) as
    well, scored with its partner test; the index passes it, as all its probes (sealed and open
    segments, both backends) apply that test.  A probe without it would still be exact with a
    paired layout, but check many more candidates than the estimate assumed."""
    if sample.shape[0] < 256:
        return default_layout()
    diffs = pair_differences(sample) if n_rows >= GREEDY_MIN_ROWS else None
    entropy = bit_entropy(sample)
    kinds: list[tuple[tuple[int, ...], tuple[int, ...]]] = [
        (chunk_widths(m), ()) for m in CHUNK_COUNTS
    ]
    if paired:
        kinds.append((PAIRED_WIDTHS, PAIRED_PARTNERS))
    best: tuple[float, Layout] | None = None
    for widths, partners in kinds:
        if radius > mih_max_radius(len(widths)):
            # that radius would scan the segment
            scored = [(float(n_rows), balanced_layout(entropy, widths, partners))]
        else:
            offered = [balanced_layout(entropy, widths, partners)]
            if diffs is not None:
                offered.append(correlated_layout(diffs, widths, partners))
            p = prefix_bits_for(n_rows, widths, max_prefix_bits)
            scored = [(query_work(sample, x, radius, n_rows, p), x) for x in offered]
        for cost, layout in scored:
            if best is None or cost < best[0]:
                best = (cost, layout)
    assert best is not None
    return best[1]


def sample_rows(words: npt.NDArray[np.uint64], seed: int = 0) -> npt.NDArray[np.uint64]:
    """A deterministic sample of at most :data:`SAMPLE_ROWS` rows."""
    n = words.shape[0]
    if n <= SAMPLE_ROWS:
        return words
    pick = np.random.default_rng(seed).choice(n, SAMPLE_ROWS, replace=False)
    return words[np.sort(pick)]
