"""Property tests: every generated proof verifies; every tampered claim fails.

Trees of up to 300 random leaves.  Every single-bit flip of every proof element, of the root(s)
and of the leaf hash must fail.  A changed index must fail.  A changed tree size must fail
*unless* it makes the verifier do exactly the same hashing — RFC 9162 proofs do not bind the
size by themselves (e.g. leaf 0's proof in a 3-leaf tree also checks as size 4), which is why
the spec requires size and root to come from one signed checkpoint.  The oracle for "same
hashing" is the shape of the RFC's recursive PATH/SUBPROOF, independent of the verifier's bit
arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from federation.core.merkle import leaf_hash, verify_consistency, verify_inclusion
from federation.core.tlog import MemoryHashStore
from federation.errors import VerificationError

MAX_LEAVES = 300
PROPERTY_SETTINGS = settings(max_examples=40, deadline=None)


def _split(width: int) -> int:
    return 1 << ((width - 1).bit_length() - 1)


def inclusion_shape(index: int, size: int) -> tuple[bool, ...]:
    """Per proof element, leaf first: is the sibling on the left?  (RFC PATH recursion.)"""
    sides = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = lo + _split(hi - lo)
        sides.append(index >= k)
        lo, hi = (k, hi) if index >= k else (lo, k)
    return tuple(reversed(sides))


def consistency_shape(size1: int, size2: int) -> tuple[bool, tuple[bool, ...]]:
    """(old root is a node of the new tree, per element: sibling on the left?)  (SUBPROOF.)"""
    sides = []
    lo, hi, complete = 0, size2, True
    while hi != size1:
        k = lo + _split(hi - lo)
        sides.append(size1 > k)
        if size1 > k:
            lo, complete = k, False
        else:
            hi = k
    return complete, tuple(reversed(sides))


def _bit_flips(value: bytes) -> Iterator[bytes]:
    for i in range(len(value) * 8):
        flipped = bytearray(value)
        flipped[i // 8] ^= 1 << (i % 8)
        yield bytes(flipped)


def _fails(verify: Callable[..., None], *args: object) -> bool:
    try:
        verify(*args)
    except VerificationError:
        return True
    return False


@st.composite
def trees(draw: st.DrawFn) -> tuple[list[bytes], MemoryHashStore]:
    n = draw(st.integers(1, MAX_LEAVES))
    salt = draw(st.binary(max_size=8))
    leaves = [leaf_hash(salt + i.to_bytes(2, "big")) for i in range(n)]
    store = MemoryHashStore()
    for h in leaves:
        store.append(h)
    return leaves, store


@PROPERTY_SETTINGS
@given(tree=trees(), data=st.data())
def test_inclusion_proofs_verify_and_resist_tampering(
    tree: tuple[list[bytes], MemoryHashStore], data: st.DataObject
) -> None:
    leaves, store = tree
    n = len(leaves)
    index = data.draw(st.integers(0, n - 1), label="index")
    proof, root, leaf = store.inclusion_proof(index), store.root(), leaves[index]
    verify_inclusion(leaf, index, n, proof, root)

    for j, item in enumerate(proof):
        for bad in _bit_flips(item):
            mutated = [*proof[:j], bad, *proof[j + 1 :]]
            assert _fails(verify_inclusion, leaf, index, n, mutated, root)
    for bad in _bit_flips(root):
        assert _fails(verify_inclusion, leaf, index, n, proof, bad)
    for bad in _bit_flips(leaf):
        assert _fails(verify_inclusion, bad, index, n, proof, root)

    for other in range(-1, n + 2):
        if other != index:
            assert _fails(verify_inclusion, leaf, other, n, proof, root)
    shape = inclusion_shape(index, n)
    for size in range(-1, 2 * n + 2):
        if size == n:
            continue
        same = size > index and inclusion_shape(index, size) == shape
        assert _fails(verify_inclusion, leaf, index, size, proof, root) is not same


@PROPERTY_SETTINGS
@given(tree=trees(), data=st.data())
def test_consistency_proofs_verify_and_resist_tampering(
    tree: tuple[list[bytes], MemoryHashStore], data: st.DataObject
) -> None:
    leaves, store = tree
    n = len(leaves)
    m = data.draw(st.integers(1, n), label="size1")
    proof, root1, root2 = store.consistency_proof(m), store.root(m), store.root()
    verify_consistency(m, n, proof, root1, root2)

    for j, item in enumerate(proof):
        for bad in _bit_flips(item):
            mutated = [*proof[:j], bad, *proof[j + 1 :]]
            assert _fails(verify_consistency, m, n, mutated, root1, root2)
    for bad in _bit_flips(root1):
        assert _fails(verify_consistency, m, n, proof, bad, root2)
    for bad in _bit_flips(root2):
        assert _fails(verify_consistency, m, n, proof, root1, bad)

    shape = consistency_shape(m, n)

    def same_shape(size1: int, size2: int) -> bool:
        if not 0 < size1 < size2:
            return False
        return consistency_shape(size1, size2) == shape

    for size1 in range(-1, n + 2):
        if size1 != m:
            expect_ok = m < n and same_shape(size1, n)
            assert _fails(verify_consistency, size1, n, proof, root1, root2) is not expect_ok
    for size2 in range(-1, 2 * n + 2):
        if size2 != n:
            expect_ok = m < n and same_shape(m, size2)
            assert _fails(verify_consistency, m, size2, proof, root1, root2) is not expect_ok


def test_proofs_do_not_bind_the_tree_size_by_themselves() -> None:
    # Documents the RFC property the size oracle above allows for: leaf 0's proof in a 3-leaf
    # tree also verifies as size 4.  The size must come from the signed checkpoint.
    store = MemoryHashStore()
    leaves = [leaf_hash(bytes([i])) for i in range(3)]
    for h in leaves:
        store.append(h)
    proof = store.inclusion_proof(0)
    verify_inclusion(leaves[0], 0, 4, proof, store.root())
    assert inclusion_shape(0, 3) == inclusion_shape(0, 4)
    assert inclusion_shape(0, 3) != inclusion_shape(0, 5)


hashes = st.binary(min_size=0, max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    leaf=hashes,
    index=st.integers(-(2**70), 2**70),
    size=st.integers(-(2**70), 2**70),
    proof=st.lists(hashes, max_size=70),
    root=hashes,
)
def test_arbitrary_inclusion_input_only_raises_verification_error(
    leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes
) -> None:
    assume(not (index == 0 and size == 1 and not proof and leaf == root))  # a true claim
    with pytest.raises(VerificationError):
        verify_inclusion(leaf, index, size, proof, root)


@settings(max_examples=200, deadline=None)
@given(
    size1=st.integers(-(2**70), 2**70),
    size2=st.integers(-(2**70), 2**70),
    proof=st.lists(hashes, min_size=1, max_size=70),
    root1=hashes,
    root2=hashes,
)
def test_arbitrary_consistency_input_only_raises_verification_error(
    size1: int, size2: int, proof: list[bytes], root1: bytes, root2: bytes
) -> None:
    with pytest.raises(VerificationError):
        verify_consistency(size1, size2, proof, root1, root2)
