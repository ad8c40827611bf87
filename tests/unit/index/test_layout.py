"""Layouts: permutations keep distances, chunks are balanced, the choice follows the data, and
the index stays exact on skewed, clustered data with either chunk count."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.index import _kernels
from federation.index import pdq as pdq_module
from federation.index.layout import (
    Layout,
    chunk_widths,
    make_layout,
    mih_max_radius,
    permute_rows,
    popcount_rows,
    probe_masks,
)
from federation.index.pdq import PdqIndex
from federation.index.tuning import balanced_layout, bit_entropy, choose_layout

from .hashes import as_pairs, brute, flip
from .test_pdq_index import BACKENDS


def skewed(rng: np.random.Generator, n: int) -> npt.NDArray[np.uint64]:
    """Biased bits (a quarter nearly constant) and families of near-duplicates (0..40 flips)."""
    p = rng.beta(0.6, 0.6, size=256)
    centres = np.packbits(rng.random((max(1, n // 20), 256)) < p, axis=1).view(np.uint64)
    out = centres[rng.integers(0, centres.shape[0], size=n)].copy()
    noise = np.zeros((n, 256), dtype=bool)
    for i, k in enumerate(rng.integers(0, 41, size=n).tolist()):
        noise[i, rng.choice(256, k, replace=False)] = True
    return out ^ np.packbits(noise, axis=1).view(np.uint64)


def random_rows(rng: np.random.Generator, n: int) -> npt.NDArray[np.uint64]:
    return rng.integers(0, 2**64 - 1, size=(n, 4), dtype=np.uint64, endpoint=True)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_chunks=st.sampled_from([8, 11]))
def test_permutation_keeps_distances_and_moves_each_bit(seed: int, n_chunks: int) -> None:
    rng = np.random.default_rng(seed)
    layout = make_layout(rng.permutation(256), chunk_widths(n_chunks))
    rows = random_rows(rng, 50)
    moved = permute_rows(rows, layout)
    assert (popcount_rows(moved[:25] ^ moved[25:]) == popcount_rows(rows[:25] ^ rows[25:])).all()
    for bit in rng.choice(256, 5, replace=False).tolist():
        one = np.zeros(4, dtype=np.uint64)
        one[bit // 64] = np.uint64(1) << np.uint64(bit % 64)
        dest = int(np.flatnonzero(layout.order == bit)[0])
        got = permute_rows(one.reshape(1, 4), layout)[0]
        assert int(got[dest // 64] >> np.uint64(dest % 64)) & 1 == 1
        assert int(popcount_rows(got.reshape(1, 4))[0]) == 1
    if _kernels.HAVE_NUMBA:
        out = np.empty_like(rows)
        _kernels.permute_all(rows, 0, rows.shape[0], layout.tables, out)
        assert (out == moved).all()


def test_bad_layouts_are_rejected() -> None:
    with pytest.raises(ValueError, match="permute all 256"):
        make_layout(np.zeros(256, dtype=np.int64), chunk_widths(11))
    with pytest.raises(ValueError, match="32 bits"):
        make_layout(np.arange(256), (64, 64, 64, 64))


def test_probe_masks_are_all_masks_up_to_radius_3_in_weight_order() -> None:
    masks, weights, n_for = probe_masks(10)
    assert n_for.tolist() == [1, 11, 56, 176]
    assert len(set(masks.tolist())) == masks.shape[0]
    assert weights.tolist() == sorted(weights.tolist())
    assert all(
        int(m).bit_count() == w for m, w in zip(masks.tolist(), weights.tolist(), strict=True)
    )
    assert int(masks.max()) < 1 << 10


def test_entropy_is_balanced_across_chunks() -> None:
    entropy = np.full(256, 0.05)
    entropy[:70] = 1.0  # informative bits all at the front, as in a skewed contiguous layout
    layout = balanced_layout(entropy, 11)
    totals = [
        entropy[layout.order[a : a + w]].sum()
        for a, w in zip(layout.starts, layout.widths, strict=True)
    ]
    assert max(totals) - min(totals) <= 1.05 + 1e-9  # one informative bit and one width bit
    # the prefix (top bits) of every chunk holds its most informative bits
    for a, w in zip(layout.starts, layout.widths, strict=True):
        chunk = entropy[layout.order[a : a + w]]
        assert (np.diff(chunk) >= 0).all()


def test_choice_follows_the_data() -> None:
    rng = np.random.default_rng(5)
    uniform = choose_layout(random_rows(rng, 8192), 10_000_000, 31, 20)
    assert len(uniform.widths) == 11
    skew = skewed(rng, 8192)
    assert bit_entropy(skew).sum() < 200  # far below 256 bits: contiguous chunks are poor
    assert len(choose_layout(skew, 10_000_000, 31, 20).widths) == 8
    # a radius the 8-chunk tables cannot answer would scan, so 11 chunks win there
    assert len(choose_layout(skew, 10_000_000, 40, 20).widths) == 11


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_chunks", [8, 11])
def test_clustered_data_matches_brute_force(
    backend: str, n_chunks: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forced(sample: npt.NDArray[np.uint64], *_: object, **__: object) -> Layout:
        return balanced_layout(bit_entropy(sample), n_chunks)

    monkeypatch.setattr(pdq_module, "choose_layout", forced)
    rng = np.random.default_rng(n_chunks)
    stored = skewed(rng, 6000)
    index = PdqIndex(backend=backend, open_capacity=2000)  # type: ignore[arg-type]
    index.add(stored[:5000])  # one segment ...
    for a in range(5000, stored.shape[0], 100):
        index.add(stored[a : a + 100])  # ... and an open segment
    assert 0 < sum(index.segment_sizes) < stored.shape[0]
    gone = rng.choice(stored.shape[0], 300, replace=False)
    index.remove(gone)
    alive = np.ones(stored.shape[0], dtype=np.bool_)
    alive[gone] = False
    picks = stored[rng.integers(0, stored.shape[0], size=6)]
    queries = [
        flip(q, rng.choice(256, k, replace=False))
        for q, k in zip(picks, [0, 3, 9, 15, 22, 31], strict=True)
    ]
    for radius in sorted({0, 7, 20, mih_max_radius(n_chunks), mih_max_radius(n_chunks) + 1, 63}):
        for q in queries:
            assert as_pairs(index.query(q, radius)) == brute(stored, alive, q, radius)
    batch = np.stack(queries)
    for hits, q in zip(index.query_batch(batch, 31), batch, strict=True):
        assert as_pairs(hits) == brute(stored, alive, q, 31)


def test_natural_choice_on_clustered_data_is_exact() -> None:
    rng = np.random.default_rng(11)
    stored = skewed(rng, 5000)
    index = PdqIndex()
    index.add(stored)
    alive = np.ones(stored.shape[0], dtype=np.bool_)
    for q in stored[:20]:
        assert as_pairs(index.query(q, 31)) == brute(stored, alive, q, 31)
