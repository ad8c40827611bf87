"""Layouts for skewed, correlated data: the greedy allocation follows correlations, stays a
pure function of the sample, and the index stays exact with it (hypothesis vs brute force)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.index import _kernels
from federation.index import pdq as pdq_module
from federation.index.layout import Layout, chunk_widths, mih_max_radius, popcount_rows
from federation.index.pdq import PdqIndex
from federation.index.tuning import (
    GREEDY_MIN_ROWS,
    balanced_layout,
    bit_entropy,
    choose_layout,
    correlated_layout,
    pair_differences,
    prefix_bits_for,
    query_work,
)

Words = npt.NDArray[np.uint64]
BACKENDS = ["numpy", "numba"] if _kernels.HAVE_NUMBA else ["numpy"]


def factor_rows(rng: np.random.Generator, n: int, factors: int = 8) -> Words:
    """Bits driven by a few shared factors (as PDQ's DCT coefficients are), thresholded at each
    row's mean, with near-duplicate families: strongly correlated, individually balanced."""
    load = rng.normal(0, 0.5, size=(factors, 256))
    centres = rng.normal(size=(max(1, n // 4), factors)) @ load
    coef = centres[rng.integers(0, centres.shape[0], size=n)] + rng.normal(size=(n, 256))
    bits = coef > coef.mean(axis=1, keepdims=True)
    return np.packbits(bits, axis=1, bitorder="little").view(np.uint64).copy()


def twin_rows(rng: np.random.Generator, n: int) -> Words:
    """Bit 2k+1 is always a copy of bit 2k: half the bits carry no information of their own."""
    half = rng.random((n, 128)) < 0.5
    bits = np.repeat(half, 2, axis=1)
    return np.packbits(bits, axis=1, bitorder="little").view(np.uint64).copy()


def chunks_of(layout: Layout) -> list[set[int]]:
    return [
        set(layout.order[a : a + w].tolist())
        for a, w in zip(layout.starts, layout.widths, strict=True)
    ]


@pytest.mark.parametrize("n_chunks", [8, 11])
def test_greedy_never_puts_a_bit_with_its_copy(n_chunks: int) -> None:
    rows = twin_rows(np.random.default_rng(1), 4096)
    layout = correlated_layout(pair_differences(rows), n_chunks)
    assert sorted(layout.order.tolist()) == list(range(256))
    assert layout.widths == chunk_widths(n_chunks)
    for chunk in chunks_of(layout):
        # a copy separates no pair its twin has not separated already: worthless in that chunk
        assert not any(b ^ 1 in chunk for b in chunk)


def noisy_copies(rng: np.random.Generator, n: int, perm: npt.NDArray[np.int64]) -> Words:
    """64 random bits, each copied to 4 scattered positions with 10% of copies flipped: every
    bit is balanced (full per-bit entropy) yet chunks holding two copies of one bit are weak."""
    z = rng.random((n, 64)) < 0.5
    bits = np.repeat(z, 4, axis=1) ^ (rng.random((n, 256)) < 0.1)
    bits = np.ascontiguousarray(bits[:, perm])
    return np.packbits(bits, axis=1, bitorder="little").view(np.uint64).copy()


@pytest.mark.parametrize(("n_chunks", "ratio"), [(8, 0.95), (11, 0.75)])
def test_greedy_cuts_estimated_work_on_correlated_bits(n_chunks: int, ratio: float) -> None:
    rng = np.random.default_rng(2)
    perm = rng.permutation(256)
    sample, held_out = noisy_copies(rng, 8192, perm), noisy_copies(rng, 8192, perm)
    greedy = correlated_layout(pair_differences(sample), n_chunks)
    entropy = balanced_layout(bit_entropy(sample), n_chunks)
    p = prefix_bits_for(10_000_000, greedy.widths, 20)
    # scored on rows the layouts were not chosen from (8 chunks: probes dominate the work)
    work_greedy = query_work(held_out, greedy, 31, 10_000_000, p)
    assert work_greedy < ratio * query_work(held_out, entropy, 31, 10_000_000, p)
    assert choose_layout(sample, GREEDY_MIN_ROWS, 31, 20).widths == chunk_widths(11)


def test_choice_is_a_pure_function_of_the_sample() -> None:
    sample = factor_rows(np.random.default_rng(3), 8192)
    a = choose_layout(sample, GREEDY_MIN_ROWS, 31, 20)
    b = choose_layout(sample.copy(), GREEDY_MIN_ROWS, 31, 20)
    assert a.widths == b.widths
    assert (a.order == b.order).all()


def brute(stored: Words, alive: npt.NDArray[np.bool_], q: Words, r: int) -> list[tuple[int, int]]:
    d = popcount_rows(stored ^ q.reshape(1, -1))
    return sorted((int(d[i]), int(i)) for i in np.flatnonzero((d <= r) & alive))


def pairs_of(hits: pdq_module.Hits) -> list[tuple[int, int]]:
    return list(zip(hits.distances.tolist(), hits.ids.tolist(), strict=True))


def near(rng: np.random.Generator, q: Words, k: int) -> Words:
    out = q.copy()
    for b in rng.choice(256, k, replace=False).tolist():
        out[b // 64] ^= np.uint64(1) << np.uint64(b % 64)
    return out


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_chunks=st.sampled_from([8, 11]),
    backend=st.sampled_from(BACKENDS),
)
def test_greedy_layouts_match_brute_force(seed: int, n_chunks: int, backend: str) -> None:
    rng = np.random.default_rng(seed)
    stored = factor_rows(rng, 3000)

    def forced(sample: Words, *_: object) -> Layout:
        return correlated_layout(pair_differences(sample, 1024), n_chunks)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pdq_module, "choose_layout", forced)
        index = PdqIndex(backend=backend, open_capacity=1000, background=False)  # type: ignore[arg-type]
        index.add(stored[:2400])  # a sealed segment with the greedy layout ...
        for a in range(2400, stored.shape[0], 150):
            index.add(stored[a : a + 150])  # ... and open segments
    assert 0 < sum(index.segment_sizes) < stored.shape[0]
    gone = rng.choice(stored.shape[0], 200, replace=False)
    index.remove(gone)
    alive = np.ones(stored.shape[0], dtype=np.bool_)
    alive[gone] = False
    picks = stored[rng.integers(0, stored.shape[0], size=5)]
    queries = [near(rng, q, k) for q, k in zip(picks, [0, 4, 13, 25, 31], strict=True)]
    top = mih_max_radius(n_chunks)
    for radius in (0, 5, 19, 31, top, top + 1, 63):
        for q in queries:
            assert pairs_of(index.query(q, radius)) == brute(stored, alive, q, radius)
    for hits, q in zip(index.query_batch(np.stack(queries), 31), queries, strict=True):
        assert pairs_of(hits) == brute(stored, alive, q, 31)
