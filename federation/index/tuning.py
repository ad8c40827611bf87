"""Choosing a segment's :class:`~federation.index.layout.Layout` from the rows it will hold.

Multi-index hashing is fast when every chunk carries close to its width in entropy: a probe at
radius ``ρ`` then returns about ``n * V(w, ρ) / 2**w`` rows.  Real collections are skewed —
biased and correlated bits, families of near-duplicates — and a chunk made of low-entropy bits
returns a large share of the collection.  Exactness does not depend on which bits form a chunk
(see :mod:`federation.index.layout`), so the choice is free to follow the data:

1. Per bit, the chance ``δ`` that two random rows differ there (``2 p (1 - p)``), as the
   collision entropy ``-log2(1 - δ)`` — the quantity that sets how many rows share a bucket.
2. Bits are dealt, most informative first, to the chunk with the least entropy so far
   (greedy balancing; correlation between bits is ignored), and inside a chunk ordered so the
   most informative bits form the direct-table prefix (even bucket sizes).
3. For each offered chunk count the expected work of a query at the index's default radius is
   estimated on a sample — candidates that pass the chunk test (measured, using sample rows
   as queries against the sample) plus bucket probes — and the cheaper layout wins.

Everything is a pure function of a sample, so two nodes with the same rows build the same
tables.
"""

from __future__ import annotations

from math import comb

import numpy as np
import numpy.typing as npt

from federation.index.layout import (
    CHUNK_COUNTS,
    Layout,
    chunk_keys,
    chunk_radii,
    chunk_widths,
    default_layout,
    make_layout,
    mih_max_radius,
    permute_rows,
    popcount,
    prefix_bits_for,
)

SAMPLE_ROWS = 8192
"""Rows sampled to estimate bit statistics and candidate rates."""

SAMPLE_QUERIES = 64
"""Sample rows used as queries when estimating candidate rates."""

PROBE_COST = 1.0
"""Cost of one bucket probe relative to one candidate verification (both ~one cache miss)."""


def bit_entropy(sample: npt.NDArray[np.uint64]) -> npt.NDArray[np.float64]:
    """Collision entropy of each of the 256 bits over the rows of ``sample``."""
    bits = np.unpackbits(np.ascontiguousarray(sample).view(np.uint8), axis=1, bitorder="little")
    p = bits.mean(axis=0, dtype=np.float64)
    delta = 2 * p * (1 - p)
    ent: npt.NDArray[np.float64] = -np.log2(np.maximum(1 - delta, 1e-12))
    return ent


def balanced_layout(entropy: npt.NDArray[np.float64], n_chunks: int) -> Layout:
    """Deal bits to ``n_chunks`` chunks so every chunk gets a similar total entropy."""
    widths = chunk_widths(n_chunks)
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
    return make_layout(order, widths)


def _probes(prefix_bits: int, radii: npt.NDArray[np.int64]) -> int:
    return sum(
        sum(comb(prefix_bits, k) for k in range(int(rc) + 1)) for rc in radii.tolist() if rc >= 0
    )


def candidate_rate(sample: npt.NDArray[np.uint64], layout: Layout, radius: int) -> float:
    """Mean share of rows passing at least the per-chunk test, summed over chunks (so a row
    found by two chunks counts twice, as it costs twice), with sample rows as queries."""
    rows = permute_rows(sample, layout)
    radii = chunk_radii(radius, len(layout.widths))
    queries = rows[:SAMPLE_QUERIES]
    hits = 0
    for c, (start, width) in enumerate(zip(layout.starts, layout.widths, strict=True)):
        if radii[c] < 0:
            continue
        keys = chunk_keys(rows, start, width)
        for q in chunk_keys(queries, start, width).tolist():
            hits += int((popcount(keys ^ np.uint64(q)) <= radii[c]).sum()) - 1  # minus itself
    return float(hits / (int(queries.shape[0]) * max(1, int(rows.shape[0]) - 1)))


def choose_layout(
    sample: npt.NDArray[np.uint64], n_rows: int, radius: int, max_prefix_bits: int
) -> Layout:
    """The layout with the least estimated query work for a segment of ``n_rows``."""
    if sample.shape[0] < 256:
        return default_layout()
    entropy = bit_entropy(sample)
    best: tuple[float, Layout] | None = None
    for m in CHUNK_COUNTS:
        layout = balanced_layout(entropy, m)
        if radius > mih_max_radius(m):
            cost = float(n_rows)  # that radius would scan the segment
        else:
            p = prefix_bits_for(n_rows, layout.widths, max_prefix_bits)
            rate = candidate_rate(sample, layout, radius)
            cost = rate * n_rows + PROBE_COST * _probes(p, chunk_radii(radius, m))
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
