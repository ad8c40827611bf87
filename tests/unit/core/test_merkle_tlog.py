"""The stored-hash log (federation.core.tlog) against the RFC reference implementation.

Roots and proofs from the flat position table must equal MTH/PATH/PROOF computed from the
leaves for every size up to 70 and a few larger ones, every stored position must hold the MTH
of exactly its subtree, and reads must stay O(log n) (counted, not timed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from federation.core.merkle import (
    RootBuilder,
    leaf_hash,
    reference_consistency_proof,
    reference_inclusion_proof,
    root_from_leaf_hashes,
)
from federation.core.tlog import (
    MemoryHashStore,
    consistency_proof,
    hashes_to_store,
    inclusion_proof,
    split_stored_hash_index,
    stored_hash_count,
    stored_hash_index,
    tree_root,
)
from federation.errors import InputError, NotFoundError, StorageError


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def _store(leaves: Sequence[bytes]) -> MemoryHashStore:
    store = MemoryHashStore()
    for h in leaves:
        store.append(h)
    return store


class CountingReader:
    """Wraps a reader and records every batch, so tests can bound the lookups."""

    def __init__(self, store: MemoryHashStore) -> None:
        self.store = store
        self.batches: list[int] = []

    def __call__(self, positions: Sequence[int], /) -> Sequence[bytes]:
        self.batches.append(len(positions))
        return self.store.read_hashes(positions)

    @property
    def reads(self) -> int:
        return sum(self.batches)


def test_stored_hash_index_known_layout() -> None:
    # Append order: leaf0, leaf1, node(1,0), leaf2, leaf3, node(1,1), node(2,0), leaf4, ...
    layout = [(0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1), (2, 0), (0, 4), (0, 5), (1, 2)]
    assert [stored_hash_index(level, k) for level, k in layout] == list(range(len(layout)))
    assert [split_stored_hash_index(p) for p in range(len(layout))] == layout


def test_stored_hash_index_is_a_bijection() -> None:
    for p in [*range(20000), 2**40 - 3, 2**62 + 12345]:
        level, k = split_stored_hash_index(p)
        assert stored_hash_index(level, k) == p
    for level in range(12):
        for k in range(300):
            assert split_stored_hash_index(stored_hash_index(level, k)) == (level, k)


def test_negative_positions_are_refused() -> None:
    with pytest.raises(InputError):
        stored_hash_index(-1, 0)
    with pytest.raises(InputError):
        split_stored_hash_index(-1)


def test_hashes_to_store_positions_are_dense_and_hold_their_subtree() -> None:
    leaves = _leaves(70)
    table: dict[int, bytes] = {}
    for n, h in enumerate(leaves):
        new = hashes_to_store(n, h, lambda ps: [table[p] for p in ps])
        assert [p for p, _ in new] == list(range(stored_hash_count(n), stored_hash_count(n + 1)))
        table.update(new)
    assert sorted(table) == list(range(stored_hash_count(70)))
    for position, value in table.items():
        level, k = split_stored_hash_index(position)
        assert value == root_from_leaf_hashes(leaves[k << level : (k + 1) << level])


SMALL = 70
LARGER = (100, 127, 128, 129, 255, 256, 257, 1000, 1025)


@pytest.fixture(scope="module")
def big() -> tuple[list[bytes], MemoryHashStore]:
    leaves = _leaves(max(LARGER))
    return leaves, _store(leaves)


def test_roots_equal_reference_for_every_small_size(
    big: tuple[list[bytes], MemoryHashStore],
) -> None:
    leaves, store = big
    builder = RootBuilder()
    for n in range(SMALL + 1):
        want = root_from_leaf_hashes(leaves[:n])
        assert store.root(n) == want
        assert builder.root() == want
        builder.append(leaves[n])


def test_all_proofs_equal_reference_up_to_70(big: tuple[list[bytes], MemoryHashStore]) -> None:
    leaves, store = big
    for n in range(1, SMALL + 1):
        tree = leaves[:n]
        for i in range(n):
            assert store.inclusion_proof(i, n) == reference_inclusion_proof(i, tree)
        for m in range(1, n + 1):
            assert store.consistency_proof(m, n) == reference_consistency_proof(m, tree)


@pytest.mark.parametrize("n", LARGER)
def test_larger_sizes_equal_reference(big: tuple[list[bytes], MemoryHashStore], n: int) -> None:
    leaves, store = big
    tree = leaves[:n]
    assert store.root(n) == root_from_leaf_hashes(tree)
    picks = sorted({0, 1, n // 3, n // 2, n - 2, n - 1})
    for i in picks:
        assert store.inclusion_proof(i, n) == reference_inclusion_proof(i, tree)
        assert store.consistency_proof(i + 1, n) == reference_consistency_proof(i + 1, tree)


def test_root_builder_matches_store_on_larger_sizes(
    big: tuple[list[bytes], MemoryHashStore],
) -> None:
    leaves, store = big
    builder = RootBuilder()
    builder.extend(leaves)
    assert builder.size == len(leaves)
    assert builder.root() == store.root()


# --- lookups are O(log n) -------------------------------------------------------------------

READ_SIZES = [
    *(2**k for k in range(1, 17)),
    *(2**k - 1 for k in range(2, 17)),
    *(2**k + 1 for k in range(1, 16)),
    3 * 2**14 + 5,
    54321,
    65535,
]


@pytest.fixture(scope="module")
def store_64k() -> MemoryHashStore:
    return _store(_leaves(2**16))


@pytest.mark.parametrize("n", READ_SIZES)
def test_proofs_and_roots_use_logarithmic_reads(store_64k: MemoryHashStore, n: int) -> None:
    bound = 2 * math.log2(n) + 2
    reader = CountingReader(store_64k)
    tree_root(n, reader)
    assert reader.batches == [n.bit_count()]
    for index in sorted({0, 1 % n, n // 2, n - 2 if n > 1 else 0, n - 1}):
        reader = CountingReader(store_64k)
        inclusion_proof(index, n, reader)
        assert len(reader.batches) == 1
        assert reader.reads <= bound, (index, n, reader.reads)
    for m in sorted({1, n // 3 or 1, n // 2 or 1, n - 1 or 1, n}):
        reader = CountingReader(store_64k)
        consistency_proof(m, n, reader)
        assert len(reader.batches) <= 1
        assert reader.reads <= bound, (m, n, reader.reads)


def test_append_reads_are_amortised_constant() -> None:
    store = MemoryHashStore()
    reader = CountingReader(store)
    n_leaves = 2**12
    for n, h in enumerate(_leaves(n_leaves)):
        reads, batches = reader.reads, len(reader.batches)
        new = hashes_to_store(n, h, reader)
        assert reader.reads - reads <= n.bit_length()
        assert len(reader.batches) - batches <= 1
        store.append(h)
        assert [store.read_hashes([p])[0] for p, _ in new] == [v for _, v in new]
    assert reader.reads < n_leaves  # sum of trailing ones of 0..n-1 is n - popcount(n)


# --- caller and storage errors --------------------------------------------------------------


def test_generators_refuse_impossible_arguments() -> None:
    store = _store(_leaves(5))
    with pytest.raises(InputError):
        store.inclusion_proof(5)
    with pytest.raises(InputError):
        store.inclusion_proof(-1)
    with pytest.raises(InputError):
        store.consistency_proof(0)
    with pytest.raises(InputError):
        store.consistency_proof(4, 3)
    with pytest.raises(InputError):
        store.root(6)
    with pytest.raises(InputError):
        tree_root(-1, store.read_hashes)
    with pytest.raises(InputError):
        hashes_to_store(-1, b"x" * 32, store.read_hashes)


def test_store_reports_missing_positions() -> None:
    store = _store(_leaves(5))
    with pytest.raises(NotFoundError) as info:
        tree_root(9, store.read_hashes)
    assert info.value.code == "hash_not_stored"


def test_a_reader_returning_the_wrong_count_is_a_storage_error() -> None:
    store = _store(_leaves(5))
    with pytest.raises(StorageError) as info:
        tree_root(5, lambda ps: store.read_hashes(ps)[:-1])
    assert info.value.code == "hash_reader_mismatch"


def test_empty_store() -> None:
    store = MemoryHashStore()
    assert store.size == 0
    assert store.root() == root_from_leaf_hashes([])
    assert store.append(leaf_hash(b"")) == 0
    assert store.size == 1
