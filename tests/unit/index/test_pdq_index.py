"""PdqIndex agrees exactly with brute force, on both backends, through adds and removals."""

from __future__ import annotations

import gc
import threading
import weakref

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.errors import InputError
from federation.index import _kernels
from federation.index.layout import MIH_MAX_RADIUS, chunk_radii, mih_max_radius
from federation.index.pdq import PdqIndex, pdq_words

from .hashes import as_pairs, brute, flip, planted, random_rows

BACKENDS = [
    "numpy",
    pytest.param(
        "numba", marks=pytest.mark.skipif(not _kernels.HAVE_NUMBA, reason="numba not importable")
    ),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("radius", [0, 1, 2, 15, 31, 32, 33, 47, 63])
def test_every_planted_distance_found(backend: str, radius: int) -> None:
    rng = np.random.default_rng(radius)
    q = rng.integers(0, 2**64 - 1, size=4, dtype=np.uint64, endpoint=True)
    stored = planted(rng, 3000, q, min(radius + 1, 64))
    index = PdqIndex(backend=backend, open_capacity=500)  # type: ignore[arg-type]
    for a in range(0, stored.shape[0], 700):
        index.add(stored[a : a + 700])
    # both paths exercised: rows in sealed segments and rows still in the open segment
    assert 0 < sum(index.segment_sizes) < stored.shape[0]
    alive = np.ones(stored.shape[0], dtype=np.bool_)
    got = as_pairs(index.query(q, radius))
    assert got == brute(stored, alive, q, radius)
    assert [d for d, _ in got].count(radius) == 2  # the boundary itself is included...
    assert all(d <= radius for d, _ in got)  # ...and radius + 1 is not


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    radius=st.sampled_from([0, 3, 31, 32, 63]),
    cap=st.sampled_from([8, 64, 10_000]),
    backend=st.sampled_from(["numpy", "numba"] if _kernels.HAVE_NUMBA else ["numpy"]),
    ops=st.lists(st.tuples(st.sampled_from(["add", "remove"]), st.integers(1, 120)), max_size=8),
)
def test_matches_brute_force_through_adds_and_removals(
    seed: int, radius: int, cap: int, backend: str, ops: list[tuple[str, int]]
) -> None:
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 2**64 - 1, size=4, dtype=np.uint64, endpoint=True)
    index = PdqIndex(backend=backend, open_capacity=cap)  # type: ignore[arg-type]
    stored = planted(rng, 200, q, radius + 1)
    index.add(stored)
    alive = np.ones(stored.shape[0], dtype=np.bool_)
    for op, k in [*ops, ("check", 0)]:
        if op == "add":
            extra = planted(rng, k, q, min(radius + 1, 40))
            ids = index.add(extra)
            assert ids.tolist() == list(range(stored.shape[0], stored.shape[0] + extra.shape[0]))
            stored = np.concatenate([stored, extra])
            alive = np.concatenate([alive, np.ones(extra.shape[0], dtype=np.bool_)])
        elif op == "remove":
            gone = rng.choice(stored.shape[0], min(k, stored.shape[0]), replace=False)
            index.remove(gone)
            alive[gone] = False
        assert as_pairs(index.query(q, radius)) == brute(stored, alive, q, radius)
        assert len(index) == int(alive.sum())
    batch = np.stack([q, stored[0], flip(q, np.arange(radius // 2))])
    for hits, one in zip(index.query_batch(batch, radius), batch, strict=True):
        assert as_pairs(hits) == brute(stored, alive, one, radius)


@pytest.mark.parametrize("n_chunks", [8, 11])
def test_chunk_radii_satisfy_pigeonhole_bound(n_chunks: int) -> None:
    top = mih_max_radius(n_chunks)
    assert top <= MIH_MAX_RADIUS
    for r in range(top + 1):
        radii = chunk_radii(r, n_chunks)
        assert int((radii + 1).sum()) == r + 1
        assert radii.max() <= 3
    with pytest.raises(ValueError, match="outside"):
        chunk_radii(top + 1, n_chunks)


def test_dihedral_query_reports_best_transform() -> None:
    rng = np.random.default_rng(7)
    variants = rng.integers(0, 2**64 - 1, size=(8, 4), dtype=np.uint64, endpoint=True)
    index = PdqIndex(backend="numpy")
    index.add(rng.integers(0, 2**64 - 1, size=(50, 4), dtype=np.uint64, endpoint=True))
    (row,) = index.add(flip(variants[3], np.arange(5))).tolist()
    hits = index.query_dihedral(variants, 31)
    assert hits.ids.tolist() == [row]
    assert hits.distances.tolist() == [5]
    assert hits.transforms is not None
    assert hits.transforms.tolist() == [3]


def test_bad_input_is_rejected() -> None:
    index = PdqIndex()
    with pytest.raises(InputError, match="64 hex"):
        index.add(["abc"])
    with pytest.raises(InputError, match="hex"):
        index.add(["zz" * 32])
    with pytest.raises(InputError, match="0..63"):
        index.query("00" * 32, 64)
    with pytest.raises(InputError, match="unknown"):
        index.remove([0])
    with pytest.raises(InputError, match="exactly 8"):
        index.query_dihedral(["00" * 32])


def test_hex_and_bytes_forms_agree() -> None:
    h = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
    assert (pdq_words(h) == pdq_words(bytes.fromhex(h))).all()
    index = PdqIndex()
    (row,) = index.add([h]).tolist()
    assert index.query(bytes.fromhex(h), 0).ids.tolist() == [row]


def _query_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("pdq-index-query")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_batches_with_answers_past_every_buffer_match_brute_force(backend: str) -> None:
    """Queries whose candidates and hits overflow the probe buffers many times over, between
    ordinary ones, in sealed and open segments: each query's answer is exact and whole (the
    hits found before a buffer grew are kept, and the queries after it are all answered)."""
    rng = np.random.default_rng(21)
    dup = random_rows(rng, 1)[0]
    copies = np.repeat(dup.reshape(1, 4), 12_000, axis=0)
    stored = np.concatenate([random_rows(rng, 3000), copies, planted(rng, 500, dup, 31)])
    stored = stored[rng.permutation(stored.shape[0])]
    index = PdqIndex(backend=backend, open_capacity=6000, threads=3, background=False)  # type: ignore[arg-type]
    index.add(stored[:14_000])  # one sealed segment ...
    for a in range(14_000, stored.shape[0], 700):
        index.add(stored[a : a + 700])  # ... and an open one, both full of copies
    assert index.stats().open_rows
    assert index.stats().segments
    index.remove(np.arange(0, stored.shape[0], 7))
    alive = np.ones(stored.shape[0], dtype=np.bool_)
    alive[::7] = False
    near = [flip(dup, rng.choice(256, k, replace=False)) for k in (0, 3, 17, 31, 40)]
    queries = np.stack([stored[5], *near[:2], stored[9], *near[2:], stored[11], dup])
    for radius in (0, 31, 48):
        got = index.query_batch(np.concatenate([queries] * 3), radius)
        for hits, q in zip(got, np.concatenate([queries] * 3), strict=True):
            assert as_pairs(hits) == brute(stored, alive, q, radius)
        assert len(got[1]) > 9000  # the overflowing queries really are there
    index.close()


@pytest.mark.skipif(not _kernels.HAVE_NUMBA, reason="numba not importable")
def test_query_threads_end_with_close_and_with_the_index() -> None:
    rng = np.random.default_rng(22)
    rows = random_rows(rng, 2000)
    before = _query_threads()
    index = PdqIndex(threads=3, background=False)
    index.add(rows)
    want = [as_pairs(index.query(q)) for q in rows[:40]]
    assert [as_pairs(h) for h in index.query_batch(rows[:40])] == want
    first = _query_threads() - before
    assert 1 <= len(first) <= 2  # threads - 1 helpers; the caller works too
    assert [as_pairs(h) for h in index.query_batch(rows[:40])] == want
    assert _query_threads() - before == first  # kept between batches
    index.close()
    assert not any(t.is_alive() for t in first)
    assert [as_pairs(h) for h in index.query_batch(rows[:40])] == want  # usable after close
    second = _query_threads() - before
    assert second
    assert not second & first
    dropped = weakref.ref(index)
    del index
    gc.collect()
    assert dropped() is None
    for t in second:
        t.join(timeout=30)  # a liveness bound, not a timing: shutdown only wakes them
        assert not t.is_alive()


@pytest.mark.skipif(not _kernels.HAVE_NUMBA, reason="numba not importable")
def test_concurrent_batches_share_the_query_threads() -> None:
    rng = np.random.default_rng(23)
    rows = random_rows(rng, 3000)
    queries = np.stack([flip(rows[i], np.arange(i % 20)) for i in range(0, 3000, 25)])
    with PdqIndex(threads=2, open_capacity=1000, background=False) as index:
        index.add(rows[:2000])
        index.add(rows[2000:2500])
        index.add(rows[2500:])
        want = [as_pairs(index.query(q, 19)) for q in queries]
        errors: list[BaseException] = []

        def reader() -> None:
            try:
                for _ in range(5):
                    got = index.query_batch(queries, 19)
                    assert [as_pairs(h) for h in got] == want
            except BaseException as exc:  # re-raised below
                errors.append(exc)

        readers = [threading.Thread(target=reader) for _ in range(4)]
        for t in readers:
            t.start()
        for t in readers:
            t.join()
        assert not errors
        assert all(len(w) == 1 for w in want)
