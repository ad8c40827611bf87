"""How the PDQ index cuts a 256-bit hash into chunks, and which radius each chunk is probed at.

Multi-index hashing (Norouzi, Punjani & Fleet, "Fast Search in Hamming Space with Multi-Index
Hashing", CVPR 2012) rests on a pigeonhole bound: if the 256 bits are split into chunks and a
hash is within distance ``r`` of the query, then its per-chunk distances ``d_i`` sum to at most
``r``, so for any per-chunk radii with ``sum(r_i + 1) > r`` at least one chunk has
``d_i <= r_i``.  Probing every chunk's table at its radius therefore finds *every* neighbour:
the search is exact, not approximate.  A chunk can also be left out (``r_i = -1``), which adds
nothing to the sum — that is how small radii get cheap.

The layout is eleven chunks of 23–24 bits probed at radius ≤ 2: ``11 * 3 = 33 > 32`` units,
enough for radius 32.  Radius 0/1/2 per chunk was chosen because per unit of the bound it
balances bucket probes against random candidates best at 1–10M hashes (16-bit chunks at radius
1 drown in candidates, 32-bit chunks at radius 3 in probes).  Past radius 32 the index scans.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt

PDQ_WORDS = 4
"""A PDQ hash is stored as four 64-bit words (its 32 bytes viewed natively)."""

CHUNK_WIDTHS: tuple[int, ...] = (24, 24, 24, 23, 23, 23, 23, 23, 23, 23, 23)
"""Widths of the chunks, in bit order; they tile all 256 bits."""

CHUNK_STARTS: tuple[int, ...] = tuple(sum(CHUNK_WIDTHS[:i]) for i in range(len(CHUNK_WIDTHS)))
"""First bit of each chunk."""

MAX_CHUNK_RADIUS = 2
"""Largest radius a chunk table is probed at (its mask list holds masks up to this weight)."""

MIH_MAX_RADIUS = len(CHUNK_WIDTHS) * (MAX_CHUNK_RADIUS + 1) - 1
"""Largest query radius the chunk tables answer; beyond it the index falls back to a scan."""

assert sum(CHUNK_WIDTHS) == 256


@cache
def chunk_radii(radius: int) -> npt.NDArray[np.int64]:
    """Per-chunk probe radii for a query radius: the cheapest allocation with
    ``sum(r_i + 1) == radius + 1``.

    Units are handed out round-robin so every chunk reaches radius 0 before any reaches 1: a
    radius-0 probe is one bucket, so small query radii cost almost nothing.
    """
    if not 0 <= radius <= MIH_MAX_RADIUS:
        raise ValueError(f"radius {radius} outside 0..{MIH_MAX_RADIUS}")
    radii = np.full(len(CHUNK_WIDTHS), -1, dtype=np.int64)
    units = radius + 1
    while units:
        for c in range(len(radii)):
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
    masks += [1 << i for i in range(prefix_bits)]
    masks += [(1 << i) | (1 << j) for i in range(prefix_bits) for j in range(i + 1, prefix_bits)]
    weights = [m.bit_count() for m in masks]
    counts = [sum(1 for w in weights if w <= k) for k in range(MAX_CHUNK_RADIUS + 1)]
    return (
        np.array(masks, dtype=np.uint64),
        np.array(weights, dtype=np.int64),
        np.array(counts, dtype=np.int64),
    )


def prefix_bits_for(n_rows: int, max_prefix_bits: int) -> int:
    """Direct-table bits for a segment of ``n_rows``: about one row per bucket, bounded so the
    table stays small (≤ 2**max_prefix_bits entries) and the stored suffix fits 16 bits."""
    want = max(1, n_rows).bit_length() - 1
    low = max(CHUNK_WIDTHS) - 16
    return int(min(max(want, low), max_prefix_bits, min(CHUNK_WIDTHS)))


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
