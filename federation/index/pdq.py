"""Exact radius search over PDQ hashes, updated incrementally (no rebuild per change).

Rows are numbered in arrival order and that number is the id :meth:`PdqIndex.add` returns.
New rows land in a small *side buffer* that every query scans by brute force, so a hash is
matchable the moment it is added.  When the buffer fills it is sealed into an immutable
multi-index :class:`~federation.index.segment.Segment`; adjacent segments of similar size
are merged (a logarithmic merge, as in Bentley–Saxe / LSM trees: the newest two merge while the
older is at most 4x the newer), so a query probes only a handful of segments (≤ 5 at 10M rows
added 8,192 at a time) and a bulk ``add`` of many rows builds one segment straight away.
Removal sets a tombstone bit in O(1); tombstoned rows are skipped by every search.

Cost of an add, precisely: amortised O(log(n / side_capacity)) row-rebuilds per row, not O(1).
Simulating the merge rule, a row is rebuilt about 1.3 times per doubling of the index: 5.2 times
at 100k rows, 9.1 at 1M, 13.2 at 10M (rows added one at a time or in 8,192 blocks).  Each
rebuild costs under a microsecond per row, so a steady stream of single adds at 10M costs about
10 µs each on average, but the add that triggers a merge into the largest segment pays for the
whole merge (seconds at 10M) synchronously.  Amortised O(1) would need mutable buckets (append
new postings to per-bucket overflow arrays, compact every constant fraction of n); that is not
done.

Each segment picks its own bit permutation and chunk count from its rows
(:mod:`federation.index.tuning`).  Results are exact (100% recall) at every radius 0..63: a
segment answers radii up to its layout's pigeonhole bound (31 for 8 chunks, 43 for 11; see
:mod:`federation.index.layout`) from its chunk tables and scans its rows beyond that; the side
buffer is always scanned.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from federation.core.signals import DIHEDRAL_TRANSFORMS
from federation.errors import InputError
from federation.index import _kernels
from federation.index.layout import PDQ_WORDS, chunk_radii, popcount_rows, probe_masks
from federation.index.segment import Segment, build_segment, query_segment_numpy
from federation.index.tuning import choose_layout, sample_rows

PDQ_MAX_RADIUS = 63
"""Largest radius a query may ask for (policy bound of the federation)."""


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
    """Exact Hamming-radius search over 256-bit PDQ hashes with O(1) add-visibility and remove."""

    def __init__(
        self,
        radius_default: int = 31,
        *,
        backend: Backend = "auto",
        side_capacity: int = 8192,
        max_prefix_bits: int = 20,
        threads: int | None = None,
    ) -> None:
        self.radius_default = self._check_radius(radius_default)
        self.use_numba = _pick_backend(backend)
        self.side_capacity = side_capacity
        self.max_prefix_bits = max_prefix_bits
        self.threads = threads or os.cpu_count() or 1
        self._words = np.zeros((0, PDQ_WORDS), dtype=np.uint64)
        self._alive = np.zeros(0, dtype=np.bool_)
        self._n = 0
        self._live = 0
        self._segments: list[Segment] = []
        self._local = threading.local()

    # -- updates ---------------------------------------------------------------------------

    def add(self, hashes: HashInput | Sequence[str | bytes]) -> npt.NDArray[np.int64]:
        """Add hashes; returns their ids (consecutive row numbers).  They match at once."""
        new = pdq_words(hashes)
        k = new.shape[0]
        self._reserve(self._n + k)
        first = self._n
        self._words[first : first + k] = new
        self._alive[first : first + k] = True
        self._n += k
        self._live += k
        self._seal_if_full()
        return np.arange(first, first + k, dtype=np.int64)

    def remove(self, ids: npt.ArrayLike) -> int:
        """Tombstone rows (idempotent); returns how many were live.  Unknown ids raise."""
        rows = np.asarray(ids, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= self._n):
            raise InputError("unknown PDQ index id", code="not_indexed", field="id")
        rows = np.unique(rows)
        was = int(self._alive[rows].sum())
        self._alive[rows] = False
        self._live -= was
        return was

    def __len__(self) -> int:
        return self._live

    @property
    def nbytes(self) -> int:
        """Bytes held: raw hashes, tombstones and every segment's tables."""
        own = self._words[: self._n].nbytes + self._alive[: self._n].nbytes
        return int(own + sum(s.nbytes for s in self._segments))

    @property
    def segment_sizes(self) -> list[int]:
        """Rows per segment, oldest first (the side buffer is not a segment)."""
        return [s.hi - s.lo for s in self._segments]

    def hashes(self, ids: npt.ArrayLike) -> npt.NDArray[np.uint64]:
        """Stored hash words of the given ids."""
        return self._words[np.asarray(ids, dtype=np.int64)]

    def _reserve(self, want: int) -> None:
        if want <= self._words.shape[0]:
            return
        # 1.25x growth: amortised O(1) per add without doubling the 10M-hash footprint.
        cap = max(want, int(self._words.shape[0] * 1.25), 1024)
        words = np.zeros((cap, PDQ_WORDS), dtype=np.uint64)
        words[: self._n] = self._words[: self._n]
        alive = np.zeros(cap, dtype=np.bool_)
        alive[: self._n] = self._alive[: self._n]
        self._words, self._alive = words, alive

    def _side_lo(self) -> int:
        return self._segments[-1].hi if self._segments else 0

    def _seal_if_full(self) -> None:
        lo = self._side_lo()
        if self._n - lo < self.side_capacity:
            return
        self._segments.append(self._build(lo, self._n))
        while len(self._segments) >= 2:
            older, newer = self._segments[-2], self._segments[-1]
            if (older.hi - older.lo) > 4 * (newer.hi - newer.lo):
                break
            self._segments[-2:] = [self._build(older.lo, newer.hi)]

    def _build(self, lo: int, hi: int) -> Segment:
        sample = sample_rows(self._words[lo:hi], seed=lo)
        layout = choose_layout(sample, hi - lo, self.radius_default, self.max_prefix_bits)
        return build_segment(
            self._words,
            lo,
            hi,
            layout,
            max_prefix_bits=self.max_prefix_bits,
            use_numba=self.use_numba,
        )

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
        """:meth:`query` for many hashes: one compiled call per block, blocks spread over
        ``threads`` threads (the kernels release the GIL)."""
        words = pdq_words(queries)
        r = self._check_radius(self.radius_default if max_distance is None else max_distance)
        n = words.shape[0]
        if n < 2 * self.threads or self.threads == 1:
            qidx, rows, dist = self._search(words, r)
        else:
            bounds = np.linspace(0, n, self.threads + 1).astype(np.int64).tolist()
            blocks = list(zip(bounds[:-1], bounds[1:], strict=True))
            with ThreadPoolExecutor(self.threads) as pool:
                parts = list(pool.map(lambda ab: self._search(words[ab[0] : ab[1]], r), blocks))
            qidx = np.concatenate([p[0] + a for p, (a, _) in zip(parts, blocks, strict=True)])
            rows = np.concatenate([p[1] for p in parts])
            dist = np.concatenate([p[2] for p in parts])
        order = np.lexsort((rows, dist, qidx))
        qidx, rows, dist = qidx[order], rows[order], dist[order]
        cuts = np.searchsorted(qidx, np.arange(n + 1)).tolist()
        return [Hits(rows[a:b], dist[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]

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

    def _search(
        self, queries: npt.NDArray[np.uint64], r: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """All hits of a block of queries as unsorted (query number, row, distance) arrays.

        A segment whose layout cannot answer ``r`` from its tables (radius past its pigeonhole
        bound) is scanned instead, as is the side buffer, so every row is examined exactly by
        one of the two exact methods."""
        if not self.use_numba:
            found = [self._search_numpy(queries[i], r) for i in range(queries.shape[0])]
            qidx = np.concatenate([np.full(f[0].shape[0], i) for i, f in enumerate(found)])
            rows = np.concatenate([f[0] for f in found])
            dist = np.concatenate([f[1] for f in found])
            return qidx.astype(np.int64), rows, dist
        parts = [
            self._probe(s, queries, r)
            if r <= s.layout.max_radius
            else self._scan_batch(queries, r, s.lo, s.hi)
            for s in self._segments
        ]
        if self._side_lo() < self._n or not parts:
            parts.append(self._scan_batch(queries, r, self._side_lo(), self._n))
        if len(parts) == 1:
            return parts[0]
        return (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
        )

    def _search_numpy(
        self, q: npt.NDArray[np.uint64], r: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        parts = []
        for s in self._segments:
            if r <= s.layout.max_radius:
                radii = chunk_radii(r, len(s.layout.widths))
                parts.append(query_segment_numpy(s, self._words, self._alive, q, r, radii))
            else:
                parts.append(self._scan(q, r, s.lo, s.hi))
        parts.append(self._scan(q, r, self._side_lo(), self._n))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _buffer(self, name: str, shape: tuple[int, ...]) -> npt.NDArray[np.int64]:
        """A per-thread scratch array reused across queries (allocating ~100 KB per query
        would cost page faults on every call); grown, never shrunk."""
        have: npt.NDArray[np.int64] | None = getattr(self._local, name, None)
        if have is None or have.shape[-1] < shape[-1]:
            have = np.empty(shape, dtype=np.int64)
            setattr(self._local, name, have)
        return have

    def _probe(
        self, seg: Segment, queries: npt.NDArray[np.uint64], r: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        masks, weights, n_masks_for = probe_masks(seg.prefix_bits)
        layout = seg.layout
        radii = chunk_radii(r, len(layout.widths))
        starts, widths = layout.arrays
        bounds = self._buffer("bounds", (2, masks.shape[0]))
        scratch_cap, cap = 8192, max(256, 4 * queries.shape[0])
        while True:
            scratch = self._buffer("scratch", (2, scratch_cap))
            out = self._buffer("out", (3, cap))
            got = _kernels.query_segment_batch(
                self._words, self._alive, queries, r, radii, starts, widths, layout.tables,
                layout.identity, seg.prefix_bits, seg.offsets, seg.postings, seg.suffixes,
                masks, weights, n_masks_for, scratch, bounds, out[0], out[1], out[2],
            )  # fmt: skip
            if got >= 0:
                return out[0, :got].copy(), out[1, :got].copy(), out[2, :got].copy()
            # Cannot tell which buffer overflowed; growing both is cheap and rare.
            scratch_cap = scratch.shape[1] * 8
            cap = out.shape[1] * 8

    def _scan_batch(
        self, queries: npt.NDArray[np.uint64], r: int, lo: int, hi: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        cap = max(256, 4 * queries.shape[0])
        while True:
            out_q = np.empty(cap, dtype=np.int64)
            out_rows = np.empty(cap, dtype=np.int64)
            out_dist = np.empty(cap, dtype=np.int64)
            got = _kernels.scan_rows_batch(
                self._words, self._alive, lo, hi, queries, r, out_q, out_rows, out_dist
            )
            if got >= 0:
                return out_q[:got], out_rows[:got], out_dist[:got]
            cap *= 8

    def _scan(
        self, q: npt.NDArray[np.uint64], r: int, lo: int, hi: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Vectorised brute force over rows ``[lo, hi)`` in cache-sized blocks (numpy path)."""
        rows_out = [np.empty(0, dtype=np.int64)]
        dist_out = [np.empty(0, dtype=np.int64)]
        for a in range(lo, hi, 1 << 16):
            b = min(hi, a + (1 << 16))
            d = popcount_rows(self._words[a:b] ^ q.reshape(1, -1))
            keep = np.flatnonzero((d <= r) & self._alive[a:b])
            rows_out.append(keep + a)
            dist_out.append(d[keep])
        return np.concatenate(rows_out), np.concatenate(dist_out)
