"""Shared helpers of the PDQ index tests: planted neighbours and the brute-force oracle."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from federation.index import _kernels
from federation.index.layout import popcount_rows

Words = npt.NDArray[np.uint64]

BACKEND_NAMES = ["numpy", "numba"] if _kernels.HAVE_NUMBA else ["numpy"]


def random_rows(rng: np.random.Generator, n: int) -> Words:
    return rng.integers(0, 2**64 - 1, size=(n, 4), dtype=np.uint64, endpoint=True)


def flip(q: Words, bits: npt.NDArray[np.int64]) -> Words:
    out = q.copy()
    for b in bits.tolist():
        out[b // 64] ^= np.uint64(1) << np.uint64(b % 64)
    return out


def at_distance(rng: np.random.Generator, q: Words, d: int) -> Words:
    """A hash at exactly Hamming distance ``d`` from ``q``."""
    return flip(q, rng.choice(256, d, replace=False))


def planted(rng: np.random.Generator, n_random: int, q: Words, max_d: int) -> Words:
    """Random hashes plus, for every distance 0..max_d, two hashes at exactly that distance."""
    near = [at_distance(rng, q, d) for d in range(max_d + 1) for _ in (0, 1)]
    rows = np.concatenate([random_rows(rng, n_random), np.array(near, dtype=np.uint64)])
    return rows[rng.permutation(rows.shape[0])]


def brute(stored: Words, alive: npt.NDArray[np.bool_], q: Words, r: int) -> list[tuple[int, int]]:
    d = popcount_rows(stored ^ q.reshape(1, -1))
    rows = np.flatnonzero((d <= r) & alive)
    return sorted((int(d[i]), int(i)) for i in rows)


def as_pairs(hits: object) -> list[tuple[int, int]]:
    ids = hits.ids.tolist()  # type: ignore[attr-defined]
    dist = hits.distances.tolist()  # type: ignore[attr-defined]
    return list(zip(dist, ids, strict=True))
