"""Layouts for skewed, correlated data: the greedy allocation follows correlations and stays a
pure function of the sample; paired (two-level) layouts keep the pigeonhole bound with their
partner test (hypothesis over adversarial flip patterns); the index stays exact with both
(hypothesis vs brute force)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.index import _kernels
from federation.index import pdq as pdq_module
from federation.index.layout import (
    PAIRED_PARTNERS,
    PAIRED_WIDTHS,
    SUFFIX_BITS,
    Layout,
    accepted_by,
    chunk_budgets,
    chunk_radii,
    chunk_widths,
    make_layout,
    mih_max_radius,
    partner_ranges,
    popcount_rows,
)
from federation.index.open_segment import OpenSegment
from federation.index.pdq import PdqIndex
from federation.index.tuning import (
    GREEDY_MIN_ROWS,
    balanced_layout,
    bit_entropy,
    choose_layout,
    correlated_layout,
    greedy_members,
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

    def forced(sample: Words, *_: object, **__: object) -> Layout:
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


# -- paired (two-level) layouts ------------------------------------------------------------


def paired(order: npt.NDArray[np.int64]) -> Layout:
    return make_layout(order, PAIRED_WIDTHS, PAIRED_PARTNERS)


def test_partners_must_be_mutual_pairs() -> None:
    order = np.arange(256)
    with pytest.raises(ValueError, match="mutual"):
        make_layout(order, PAIRED_WIDTHS, (1, 2, 3, 0, 8, 9, 10, 11, 4, 5, 6, 7))
    with pytest.raises(ValueError, match="mutual"):
        make_layout(order, PAIRED_WIDTHS, (0,) * 12)
    with pytest.raises(ValueError, match="mutual"):
        make_layout(order, PAIRED_WIDTHS, PAIRED_PARTNERS[:6])
    assert not make_layout(order, chunk_widths(11), (-1,) * 11).paired
    assert paired(order).paired


@pytest.mark.parametrize("radius", range(0, 48))
def test_pair_budgets_split_the_pigeonhole_bound(radius: int) -> None:
    layout = paired(np.arange(256))
    radii = chunk_radii(radius, 12)
    budgets = chunk_budgets(radius, layout)
    pairs = {tuple(sorted((c, p))) for c, p in enumerate(PAIRED_PARTNERS)}
    assert len(pairs) == 6
    # one budget per pair, and the pairs' units add up to radius + 1: the bound over pairs
    assert all(budgets[a] == budgets[b] or min(radii[a], radii[b]) < 0 for a, b in pairs)
    assert sum(int(radii[a] + radii[b] + 2) for a, b in pairs) == radius + 1
    for c, p in enumerate(PAIRED_PARTNERS):
        assert budgets[c] == (radii[c] + radii[p] + 1 if radii[c] >= 0 else -1)
    if radius == 31:  # the designed split: (2, 2) on the 24-bit pairs, (2, 1) on the 20-bit
        assert radii.tolist() == [2] * 8 + [1] * 4


@pytest.mark.parametrize("suffix_bits", [SUFFIX_BITS, 32])
@pytest.mark.parametrize("prefix_bits", [8, 12, 16, 19, 20])
def test_partner_bits_are_the_top_of_the_partner_key_and_fit_the_suffix(
    prefix_bits: int, suffix_bits: int
) -> None:
    layout = paired(np.random.default_rng(0).permutation(256))
    starts, widths = partner_ranges(layout, prefix_bits, suffix_bits)
    for c, p in enumerate(PAIRED_PARTNERS):
        own = layout.widths[c] - prefix_bits
        assert own + widths[c] <= suffix_bits
        assert widths[c] == min(layout.widths[p], suffix_bits - own)
        assert starts[c] + widths[c] == layout.starts[p] + layout.widths[p]
    plain = make_layout(np.arange(256), chunk_widths(11))
    assert not partner_ranges(plain, prefix_bits, suffix_bits)[1].any()


@st.composite
def evasive_rows(draw: st.DrawFn) -> tuple[Layout, int, int, Words, Words]:
    """A layout, a radius, prefix bits, a query and rows within the radius whose flips are
    spread over chunks as hypothesis likes — up to each chunk's probe radius + 1 and beyond,
    the shapes that would slip past a wrong budget."""
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["paired", "8", "11"]))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(256)
    layout = paired(perm) if kind == "paired" else make_layout(perm, chunk_widths(int(kind)))
    radius = draw(st.integers(0, layout.max_radius))
    prefix_bits = draw(st.integers(max(layout.widths) - SUFFIX_BITS, min(layout.widths)))
    q = rng.integers(0, 2**64 - 1, size=4, dtype=np.uint64, endpoint=True)
    radii = chunk_radii(radius, len(layout.widths))
    rows = []
    for _ in range(draw(st.integers(1, 6))):
        flips: list[int] = []
        for c, (a, w) in enumerate(zip(layout.starts, layout.widths, strict=True)):
            k = draw(st.integers(0, min(w, max(0, int(radii[c])) + 2)))
            flips += (a + rng.choice(w, k, replace=False)).tolist()
        flips = flips[:radius]  # within the radius
        bits = np.zeros(256, dtype=np.bool_)
        bits[layout.order[flips]] = True  # permuted position -> original bit
        mask = np.packbits(bits, bitorder="little").view(np.uint64)
        rows.append(q ^ mask)
    return layout, radius, prefix_bits, q, np.array(rows, dtype=np.uint64)


@settings(max_examples=300, deadline=None)
@given(case=evasive_rows())
def test_every_row_within_the_radius_is_accepted_by_some_chunk(
    case: tuple[Layout, int, int, Words, Words],
) -> None:
    layout, radius, prefix_bits, q, rows = case
    assert (popcount_rows(rows ^ q.reshape(1, -1)) <= radius).all()
    assert (accepted_by(layout, rows, q, radius, prefix_bits) >= 0).all()


def test_a_row_one_past_every_chunk_is_rejected_so_the_budgets_are_tight() -> None:
    """Flips at ``ρ_t + 1`` in every chunk key: distance ``r + 1``, accepted by no chunk.  With
    one flip fewer the row is within ``r`` and must be accepted (previous test)."""
    layout = paired(np.random.default_rng(4).permutation(256))
    q = np.zeros(4, dtype=np.uint64)
    radii = chunk_radii(31, 12)
    flips = [a + i for c, a in enumerate(layout.starts) for i in range(int(radii[c]) + 1)]
    bits = np.zeros(256, dtype=np.bool_)
    bits[layout.order[flips]] = True
    row = np.packbits(bits, bitorder="little").view(np.uint64).reshape(1, 4)
    assert int(popcount_rows(row)[0]) == 32
    assert accepted_by(layout, row, q, 31, 20)[0] == -1
    bits[layout.order[flips[0]]] = False
    row = np.packbits(bits, bitorder="little").view(np.uint64).reshape(1, 4)
    assert accepted_by(layout, row, q, 31, 20)[0] >= 0


def test_partner_test_cuts_estimated_candidates() -> None:
    rng = np.random.default_rng(6)
    sample = factor_rows(rng, 8192)
    with_pairs = correlated_layout(pair_differences(sample), PAIRED_WIDTHS, PAIRED_PARTNERS)
    without = make_layout(with_pairs.order, PAIRED_WIDTHS)
    p = prefix_bits_for(10_000_000, PAIRED_WIDTHS, 20)
    work = query_work(sample, with_pairs, 31, 10_000_000, p)
    assert work < 0.5 * query_work(sample, without, 31, 10_000_000, p)
    chosen = choose_layout(sample, GREEDY_MIN_ROWS, 31, 20, paired=True)
    assert chosen.paired
    assert not choose_layout(sample, GREEDY_MIN_ROWS, 31, 20).paired


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), backend=st.sampled_from(BACKENDS))
def test_paired_layouts_match_brute_force(seed: int, backend: str) -> None:
    """Through the index (whose probe may or may not apply the partner test: either is exact)."""
    rng = np.random.default_rng(seed)
    stored = factor_rows(rng, 3000)

    def forced(sample: Words, *_: object, **__: object) -> Layout:
        return correlated_layout(pair_differences(sample, 1024), PAIRED_WIDTHS, PAIRED_PARTNERS)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pdq_module, "choose_layout", forced)
        index = PdqIndex(backend=backend, open_capacity=1000, background=False)  # type: ignore[arg-type]
        index.add(stored[:2400])
        for a in range(2400, stored.shape[0], 150):
            index.add(stored[a : a + 150])
    alive = np.ones(stored.shape[0], dtype=np.bool_)
    gone = rng.choice(stored.shape[0], 200, replace=False)
    index.remove(gone)
    alive[gone] = False
    picks = stored[rng.integers(0, stored.shape[0], size=5)]
    queries = [near(rng, q, k) for q, k in zip(picks, [0, 6, 17, 28, 31], strict=True)]
    for radius in (0, 3, 12, 31, 40, 47, 48, 63):
        for q in queries:
            assert pairs_of(index.query(q, radius)) == brute(stored, alive, q, radius)
    for hits, q in zip(index.query_batch(np.stack(queries), 31), queries, strict=True):
        assert pairs_of(hits) == brute(stored, alive, q, 31)


@pytest.mark.skipif(not _kernels.HAVE_NUMBA, reason="numba not importable")
@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    widths=st.sampled_from([chunk_widths(11), chunk_widths(8), PAIRED_WIDTHS]),
    n_pairs=st.sampled_from([1000, 1024]),
    twins=st.booleans(),
)
def test_compiled_tuning_picks_what_numpy_picks(
    seed: int, widths: tuple[int, ...], n_pairs: int, twins: bool
) -> None:
    """Tuning runs compiled (no GIL) where numba exists and in numpy elsewhere; two nodes with
    the same rows must still build the same tables, so the two agree exactly."""
    rng = np.random.default_rng(seed)
    sample = twin_rows(rng, 2048) if twins else factor_rows(rng, 2048)
    diffs = pair_differences(sample, n_pairs, seed=seed % 7)
    members = greedy_members(diffs, widths, compiled=True)
    assert members == greedy_members(diffs, widths, compiled=False)
    assert sorted(b for chunk in members for b in chunk) == list(range(256))
    partners = PAIRED_PARTNERS if widths == PAIRED_WIDTHS else ()
    layout = correlated_layout(diffs, widths, partners)
    for radius, p in ((31, 20), (12, 11)):
        work = query_work(sample, layout, radius, 10_000_000, p, compiled=True)
        assert work == query_work(sample, layout, radius, 10_000_000, p, compiled=False)


def test_open_segments_carry_whole_partner_keys() -> None:
    """An open segment's chain links have 32 bits for the inline suffix, so at the usual
    capacities a paired chunk's links hold its partner's whole key beside its own low bits
    (a sealed segment's 16-bit suffixes hold the partner's top bits only)."""
    layout = make_layout(np.arange(256), PAIRED_WIDTHS, PAIRED_PARTNERS)
    opened = OpenSegment(0, 65536, layout, max_prefix_bits=20, use_numba=False)
    own = [w - opened.prefix_bits for w in PAIRED_WIDTHS]
    assert opened.part_widths.tolist() == [PAIRED_WIDTHS[p] for p in PAIRED_PARTNERS]
    assert all(o + w <= 32 for o, w in zip(own, opened.part_widths.tolist(), strict=True))
    _, sealed = partner_ranges(layout, 20)
    assert (sealed < opened.part_widths).any()
