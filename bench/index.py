"""PDQ match index benchmark: our index vs numpy brute force vs faiss (if importable).

For each data set (uniform random hashes; ``pdq-like``, modelled on how PDQ thresholds DCT
coefficients, with near-duplicate families; ``clustered``, a deliberately harsh skew) with
planted near-duplicates at distances 0..31, it measures build time and
memory, single-query p50/p99, batch-of-1,000 throughput and recall against brute force, and
prints each peer's ratio to ours.  ``quick`` uses 200k hashes and skips the slow faiss
multi-hash builds.  faiss-cpu is a bench-only extra (``pip install -e '.[bench]'``).

For the uniform set it then measures updates: single adds (one hash per call, as replication
of single entries does) into an index of that size while its worker merges all of it and a
full open segment waits for its seal — mean, p99 and max per add, to show that no rebuild runs
on the add path — and a snapshot save and restore of the index
(``HASHFED_BENCH_INDEX_UPDATES=0`` skips this part).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from federation.index.layout import popcount_rows
from federation.index.pdq import PdqIndex

RADIUS = 31
N_SINGLE = 300
N_BATCH = 1000
N_RECALL = 30

faiss: Any
try:
    import faiss
except ImportError:  # pragma: no cover - bench extra not installed
    faiss = None


Words = npt.NDArray[np.uint64]


def _flip(rng: np.random.Generator, rows: Words, counts: npt.NDArray[np.int64]) -> Words:
    out = rows.copy()
    for i, k in enumerate(counts.tolist()):
        for b in rng.choice(256, k, replace=False).tolist():
            out[i, b // 64] ^= np.uint64(1) << np.uint64(b % 64)
    return out


def uniform(rng: np.random.Generator, n: int) -> Words:
    return rng.integers(0, 2**64 - 1, size=(n, 4), dtype=np.uint64, endpoint=True)


def clustered(rng: np.random.Generator, n: int) -> Words:
    """Deliberately harsh skew: per-bit probabilities from Beta(0.6, 0.6) (about a quarter of
    bits nearly constant), 1 in 20 hashes a centre, the others copies of a centre with 0..40
    bits flipped.  Random pairs differ in ~88 bits instead of 128, far more than real PDQ."""
    p = rng.beta(0.6, 0.6, size=256)  # per-bit probability of 1, many near 0 or 1
    bits = rng.random((n // 20, 256)) < p
    centres = np.packbits(bits, axis=1).view(np.uint64)
    which = rng.integers(0, centres.shape[0], size=n)
    out = centres[which].copy()
    flips = rng.integers(0, 41, size=n)
    # Flip bits by XOR with random masks of the drawn weight (vectorised by weight).
    for k in range(1, 41):
        sel = np.flatnonzero(flips == k)
        if sel.size == 0:
            continue
        keys = rng.random((sel.size, 256)).argsort(axis=1)[:, :k]
        mask = np.zeros((sel.size, 256), dtype=bool)
        np.put_along_axis(mask, keys, True, axis=1)
        out[sel] ^= np.packbits(mask, axis=1).view(np.uint64)
    return np.ascontiguousarray(out)


def pdq_like(rng: np.random.Generator, n: int, block: int = 1 << 18) -> Words:
    """Modelled on how PDQ is computed: 256 "DCT coefficients" per image, thresholded at the
    image's own mean (PDQ uses the median), so each hash has about 128 ones, as PDQ's do.
    Coefficients are a per-position bias (biased bits, p ≈ 0.3..0.7) plus a 16-factor
    correlated part plus noise.
    Images come in near-duplicate families with Pareto sizes (mean ≈ 6, capped at 2,000):
    members are the family's coefficients plus noise of random strength, re-thresholded, so the
    flipped bits are the coefficients near the median, as with re-encodes and small edits;
    1 in 6 members is an exact copy.  Random pairs differ in ~126 ± 15 bits."""
    factors = 16
    load = rng.normal(0, 0.35, size=(factors, 256)).astype(np.float32)
    bias = rng.normal(0, 0.35, size=256).astype(np.float32)
    sizes = np.minimum((rng.pareto(1.5, size=n // 2 + 1) + 1) * 2, 2000).astype(np.int64)
    n_fam = int(np.searchsorted(np.cumsum(sizes), n)) + 1
    which = rng.permutation(np.repeat(np.arange(n_fam), sizes[:n_fam])[:n])
    centre = np.empty((n_fam, 256), dtype=np.float32)
    for a in range(0, n_fam, block):
        b = min(n_fam, a + block)
        z = rng.standard_normal((b - a, factors), dtype=np.float32)
        centre[a:b] = bias + z @ load + rng.standard_normal((b - a, 256), dtype=np.float32)
    out = np.empty((n, 4), dtype=np.uint64)
    for a in range(0, n, block):
        b = min(n, a + block)
        sigma = rng.uniform(0, 0.6, size=(b - a, 1)).astype(np.float32) ** 2
        sigma[rng.random(b - a) < 1 / 6] = 0
        coef = centre[which[a:b]] + sigma * rng.standard_normal((b - a, 256), dtype=np.float32)
        # PDQ thresholds at the median; the mean is close and far cheaper to generate.
        out[a:b] = np.packbits(coef > coef.mean(axis=1, keepdims=True), axis=1).view(np.uint64)
    return out


def queries_for(rng: np.random.Generator, data: Words, n: int) -> Words:
    """Stored hashes with 0..31 bits flipped: each query has at least one true neighbour."""
    picked = data[rng.integers(0, data.shape[0], size=n)]
    return _flip(rng, picked, rng.integers(0, RADIUS + 1, size=n))


def brute(data: Words, q: Words) -> set[int]:
    d = popcount_rows(data ^ q.reshape(1, -1))
    return set(np.flatnonzero(d <= RADIUS).tolist())


def _time_single(fn: Callable[[Words], Any], qs: Words) -> tuple[float, float]:
    fn(qs[0])
    lat = []
    for q in qs:
        t = time.perf_counter()
        fn(q)
        lat.append(time.perf_counter() - t)
    return float(np.percentile(lat, 50) * 1e3), float(np.percentile(lat, 99) * 1e3)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


class Row:
    def __init__(self, name: str) -> None:
        self.name = name
        self.build_s = 0.0
        self.mem_mb = 0.0
        self.p50 = self.p99 = 0.0
        self.qps = 0.0
        self.recall = 1.0


def bench_ours(data: Words, single: Words, batch: Words, truth: list[set[int]]) -> Row:
    row = Row("hashfed PdqIndex")
    index = PdqIndex(radius_default=RADIUS)
    t = time.perf_counter()
    index.add(data)
    row.build_s = time.perf_counter() - t
    row.mem_mb = index.nbytes / 2**20
    row.p50, row.p99 = _time_single(lambda q: index.query(q), single)
    index.query_batch(batch[:10])
    t = time.perf_counter()
    index.query_batch(batch)
    row.qps = batch.shape[0] / (time.perf_counter() - t)
    found = [set(index.query(q).ids.tolist()) for q in single[: len(truth)]]
    row.recall = _recall(found, truth)
    return row


def bench_brute(data: Words, single: Words, batch: Words, truth: list[set[int]]) -> Row:
    row = Row("numpy brute force")
    row.mem_mb = data.nbytes / 2**20
    few = single[: max(5, min(30, 3_000_000 // data.shape[0]))]
    row.p50, row.p99 = _time_single(lambda q: brute(data, q), few)
    row.qps = 1e3 / row.p50  # one core; a batch gains nothing (memory bandwidth bound)
    return row


def _faiss_search(index: Any, qs: Words) -> list[set[int]]:
    qb = np.ascontiguousarray(qs).view(np.uint8)
    lims, _, ids = index.range_search(qb, RADIUS + 1)  # faiss radius is exclusive
    return [set(ids[lims[i] : lims[i + 1]].tolist()) for i in range(qs.shape[0])]


def bench_faiss(
    name: str,
    make: Callable[[], Any],
    data: Words,
    single: Words,
    batch: Words,
    truth: list[set[int]],
) -> Row:
    row = Row(name)
    rss = _rss_mb()
    t = time.perf_counter()
    index = make()
    index.add(np.ascontiguousarray(data).view(np.uint8))
    row.build_s = time.perf_counter() - t
    row.mem_mb = max(_rss_mb() - rss, data.nbytes / 2**20)
    faiss.omp_set_num_threads(1)
    row.p50, row.p99 = _time_single(lambda q: _faiss_search(index, q.reshape(1, -1)), single[:50])
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    t = time.perf_counter()
    _faiss_search(index, batch)
    row.qps = batch.shape[0] / (time.perf_counter() - t)
    row.recall = _recall(_faiss_search(index, single[: len(truth)]), truth)
    return row


def _recall(found: list[set[int]], truth: list[set[int]]) -> float:
    want = sum(len(t) for t in truth)
    got = sum(len(f & t) for f, t in zip(found, truth, strict=True))
    return got / want if want else 1.0


def run(quick: bool) -> None:
    # HASHFED_BENCH_INDEX_SIZES=1000000 runs one size; HASHFED_BENCH_NO_FAISS=1 skips faiss.
    sizes = [200_000] if quick else [1_000_000, 10_000_000]
    if os.environ.get("HASHFED_BENCH_INDEX_SIZES"):
        sizes = [int(x) for x in os.environ["HASHFED_BENCH_INDEX_SIZES"].split(",")]
    # HASHFED_BENCH_INDEX_SETS=uniform,clustered picks data sets.
    sets = [("uniform", uniform), ("pdq-like", pdq_like), ("clustered", clustered)]
    if os.environ.get("HASHFED_BENCH_INDEX_SETS"):
        sets = [s for s in sets if s[0] in os.environ["HASHFED_BENCH_INDEX_SETS"].split(",")]
    print(f"machine: {os.cpu_count()} cores; radius {RADIUS}; faiss {'yes' if faiss else 'absent'}")
    for n in sizes:
        for label, gen in sets:
            rng = np.random.default_rng(n)
            data = gen(rng, n)
            single = queries_for(rng, data, N_SINGLE)
            batch = queries_for(rng, data, N_BATCH)
            truth = [brute(data, q) for q in single[:N_RECALL]]
            rows = [bench_ours(data, single, batch, truth), bench_brute(data, single, batch, truth)]
            if faiss is not None and not os.environ.get("HASHFED_BENCH_NO_FAISS"):
                rows.append(
                    bench_faiss("faiss IndexBinaryFlat", lambda: faiss.IndexBinaryFlat(256),
                                data, single, batch, truth)
                )  # fmt: skip
                if not quick:
                    for nh, b, nflip in ((16, 16, 1), (11, 23, 2)):

                        def make(nh: int = nh, b: int = b, nflip: int = nflip) -> Any:
                            ix = faiss.IndexBinaryMultiHash(256, nh, b)
                            ix.nflip = nflip
                            return ix

                        rows.append(
                            bench_faiss(f"faiss MultiHash {nh}x{b} nflip={nflip}", make,
                                        data, single, batch, truth)
                        )  # fmt: skip
            _print(n, label, rows)
            if label == "uniform" and os.environ.get("HASHFED_BENCH_INDEX_UPDATES") != "0":
                bench_updates(rng, data, single)


def bench_updates(rng: np.random.Generator, data: Words, single: Words) -> None:
    """Single adds while the worker rebuilds, then a snapshot round trip (see the module
    docstring); prints one small table per size."""
    n = data.shape[0]
    n_single = min(200_000, max(20_000, n // 50))
    index = PdqIndex(radius_default=RADIUS)
    index.add(data)
    index.merge()  # worker: rebuild all n rows (a compaction; the worst single rebuild)
    t0 = time.perf_counter()
    fill = uniform(rng, 10_000)
    index.add(fill)  # opens the open segment; then fill it to n_single / 2 short of full
    while index.stats().open_room > n_single // 2 + fill.shape[0]:
        index.add(uniform(rng, fill.shape[0]))
    index.add(uniform(rng, index.stats().open_room - n_single // 2))
    before = index.stats()
    stream = [row.tobytes() for row in uniform(rng, n_single)]
    lat = np.empty(n_single)
    for i, h in enumerate(stream):
        t = time.perf_counter()
        index.add(h)
        lat[i] = time.perf_counter() - t
    during = index.stats()
    p50_during, _ = _time_single(lambda q: index.query(q), single)
    index.flush()
    worker_s = time.perf_counter() - t0
    after = index.stats()
    p50_after, _ = _time_single(lambda q: index.query(q), single)
    print(f"\n### updates, {n:,} hashes, uniform\n")
    print(
        f"{n_single:,} single adds (one hash per call) while the worker merged all {n:,} rows"
        f" and sealed a full open segment ({before.open_room + before.open_rows[-1]:,} rows):"
        f" {after.merges - before.merges} merge(s) and {after.seals - before.seals} seal(s)"
        f" done, {worker_s:.1f} s from the merge request to idle.\n"
    )
    print("| measure | value |")
    print("| --- | ---: |")
    print(f"| add mean µs | {lat.mean() * 1e6:.1f} |")
    print(f"| add p99 µs | {np.percentile(lat, 99) * 1e6:.1f} |")
    print(f"| add max ms | {lat.max() * 1e3:.2f} |")
    print(f"| adds over 10 ms | {int((lat > 0.01).sum())} |")
    print(f"| segments after the stream (sealed; open) | {during.segments}; {during.open_rows} |")
    print(f"| query p50 ms after the stream | {p50_during:.3f} |")
    print(f"| query p50 ms once idle {after.segments}; {after.open_rows} | {p50_after:.3f} |")
    tmp = tempfile.mkdtemp(prefix="hashfed-bench-snapshot-")
    try:
        path = os.path.join(tmp, "index")
        t = time.perf_counter()
        index.save(path)
        save_s = time.perf_counter() - t
        size = sum(e.stat().st_size for e in os.scandir(path))
        t = time.perf_counter()
        loaded = PdqIndex.load(path)
        load_s = time.perf_counter() - t
        loaded.flush()
        p50_loaded, _ = _time_single(lambda q: loaded.query(q), single)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"| snapshot size MB | {size / 2**20:.0f} |")
    print(f"| snapshot save s | {save_s:.2f} |")
    print(f"| snapshot load s (read, CRC-32 and structure checks) | {load_s:.2f} |")
    print(f"| query p50 ms after load | {p50_loaded:.3f} |")


def _print(n: int, label: str, rows: list[Row]) -> None:
    ours = rows[0]
    print(f"\n### {n:,} hashes, {label}\n")
    print(
        "| index | build s | memory MB | p50 ms | p99 ms | batch q/s | recall "
        "| p50 ×ours | q/s ours× |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r.name} | {r.build_s:.1f} | {r.mem_mb:.0f} | {r.p50:.3f} | {r.p99:.3f} | "
            f"{r.qps:,.0f} | {r.recall:.4f} | {r.p50 / ours.p50:.1f} | {ours.qps / r.qps:.1f} |"
        )
