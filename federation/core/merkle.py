"""RFC 9162 §2.1 Merkle tree hashing and proof verification (pure, no I/O).

This module is what anyone who *checks* a hashfed log needs: the leaf and node hash functions
(§2.1.1), the iterative inclusion (§2.1.3.2) and consistency (§2.1.4.2) verifiers, a streaming
:class:`RootBuilder` so an auditor or replicator can rebuild the root of millions of entries in
O(log n) memory, and a plain recursive reference implementation of MTH, PATH and SUBPROOF
(§2.1.1, §2.1.3.1, §2.1.4.1) that tests use as the oracle for the stored-hash log in
:mod:`federation.core.tlog`.

Verifiers return ``None`` and raise :class:`~federation.errors.VerificationError` on every
failure, malformed input included, each with one of the stable codes in :data:`ERROR_CODES`
(documented in ``spec/log.md``).  Behaviour at the edges follows the transparency-dev vectors:
a consistency proof from size 0 is always an error (even 0 → 0), and at equal sizes only the
emptiness of the proof and byte equality of the two roots are checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

from federation.errors import VerificationError

HASH_SIZE: Final = 32
LEAF_PREFIX: Final = b"\x00"
NODE_PREFIX: Final = b"\x01"
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()

# Stable machine codes of VerificationError raised here (documented in spec/log.md).
MALFORMED_HASH: Final = "malformed_hash"
MALFORMED_PROOF: Final = "malformed_proof"
PROOF_LENGTH_INVALID: Final = "proof_length_invalid"
TREE_SIZE_INVALID: Final = "tree_size_invalid"
INDEX_OUT_OF_RANGE: Final = "index_out_of_range"
TREE_SIZE_DECREASED: Final = "tree_size_decreased"
CONSISTENCY_FROM_EMPTY: Final = "consistency_from_empty_tree"
INCLUSION_PROOF_INVALID: Final = "inclusion_proof_invalid"
CONSISTENCY_PROOF_INVALID: Final = "consistency_proof_invalid"
ERROR_CODES: Final = (
    MALFORMED_HASH,
    MALFORMED_PROOF,
    PROOF_LENGTH_INVALID,
    TREE_SIZE_INVALID,
    INDEX_OUT_OF_RANGE,
    TREE_SIZE_DECREASED,
    CONSISTENCY_FROM_EMPTY,
    INCLUSION_PROOF_INVALID,
    CONSISTENCY_PROOF_INVALID,
)

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """MTH of a one-leaf tree: SHA-256(0x00 || data).  The prefix stops a leaf posing as a node."""
    return _sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Interior node hash: SHA-256(0x01 || left || right)."""
    return _sha256(NODE_PREFIX + left + right).digest()


# --- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) -----------------------------------------


def _fail(code: str, message: str, field: str | None = None) -> VerificationError:
    return VerificationError(message, code=code, field=field)


def _check_hash(value: bytes, field: str) -> None:
    if len(value) != HASH_SIZE:
        raise _fail(MALFORMED_HASH, f"{field} must be {HASH_SIZE} bytes, got {len(value)}", field)


def _check_proof_items(proof: Sequence[bytes], want: int) -> None:
    """Reject a proof of the wrong length or with an element that is not a SHA-256 value.

    Checking the length up front (instead of relying on the loop's ``sn == 0`` test) gives the
    caller a precise code and makes trailing or preceding garbage fail before any hashing.
    """
    for i, item in enumerate(proof):
        if len(item) != HASH_SIZE:
            raise _fail(
                MALFORMED_PROOF,
                f"proof[{i}] must be {HASH_SIZE} bytes, got {len(item)}",
                f"proof[{i}]",
            )
    if len(proof) != want:
        raise _fail(
            PROOF_LENGTH_INVALID,
            f"proof has {len(proof)} hashes, expected {want} for these sizes",
            "proof",
        )


def inclusion_proof_length(index: int, size: int) -> int:
    """Number of hashes in the inclusion proof of leaf ``index`` in a tree of ``size`` leaves.

    ``inner`` levels lie below the point where the leaf's path and the tree's right edge part;
    above it, one hash per left sibling on the path (the set bits of the remaining index).
    """
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def consistency_proof_length(size1: int, size2: int) -> int:
    """Number of hashes in the consistency proof between trees of ``size1`` < ``size2`` leaves.

    The proof is the inclusion proof of the last node of the old tree at the level of size1's
    lowest set bit, plus that node itself unless size1 is a power of two (then it is root1).
    """
    shift = (size1 & -size1).bit_length() - 1
    old, new = (size1 - 1) >> shift, (size2 - 1) >> shift
    inner = (old ^ new).bit_length()
    seed = 0 if size1 == 1 << shift else 1
    return seed + inner + (old >> inner).bit_count()


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    Implements RFC 9162 §2.1.3.2 literally.  Raises VerificationError on any failure.
    """
    _check_hash(leaf_hash, "leaf_hash")
    _check_hash(root, "root")
    if size < 0:
        raise _fail(TREE_SIZE_INVALID, f"tree size must not be negative, got {size}", "size")
    if not 0 <= index < size:
        raise _fail(
            INDEX_OUT_OF_RANGE, f"leaf index {index} is not in a tree of {size} leaves", "index"
        )
    _check_proof_items(proof, inclusion_proof_length(index, size))
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:  # unreachable after the length check; kept as the RFC's own guard
            raise _fail(PROOF_LENGTH_INVALID, "proof is longer than the path", "proof")
        if fn & 1 or fn == sn:
            r = _sha256(NODE_PREFIX + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _sha256(NODE_PREFIX + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise _fail(
            INCLUSION_PROOF_INVALID,
            f"inclusion proof for leaf {index} does not lead to the root of size {size}",
            "proof",
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of ``size2`` leaves with ``root2`` extends that of ``size1``/``root1``.

    Implements RFC 9162 §2.1.4.2.  Raises VerificationError on any failure; a proof from the
    empty tree is rejected because it proves nothing (transparency-dev semantics).
    """
    if size1 < 0 or size2 < 0:
        raise _fail(TREE_SIZE_INVALID, f"tree sizes must not be negative ({size1}, {size2})")
    if size2 < size1:
        raise _fail(TREE_SIZE_DECREASED, f"size2 {size2} is smaller than size1 {size1}", "size2")
    if size1 == 0:
        raise _fail(
            CONSISTENCY_FROM_EMPTY,
            "a consistency proof from the empty tree is meaningless",
            "size1",
        )
    if size1 == size2:
        # The vectors accept equal roots of any length here: nothing is hashed, so nothing about
        # the hash function is being claimed, only that the two heads agree.
        if proof:
            raise _fail(PROOF_LENGTH_INVALID, "proof must be empty when sizes are equal", "proof")
        if root1 != root2:
            raise _fail(CONSISTENCY_PROOF_INVALID, f"two different roots for size {size1}", "root2")
        return
    _check_hash(root1, "root1")
    _check_hash(root2, "root2")
    _check_proof_items(proof, consistency_proof_length(size1, size2))

    path = list(proof)
    if size1 & (size1 - 1) == 0:  # a power of two: the old root is itself a node of the new tree
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:  # unreachable after the length check; kept as the RFC's own guard
            raise _fail(PROOF_LENGTH_INVALID, "proof is longer than the path", "proof")
        if fn & 1 or fn == sn:
            fr = _sha256(NODE_PREFIX + c + fr).digest()
            sr = _sha256(NODE_PREFIX + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _sha256(NODE_PREFIX + sr + c).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise _fail(CONSISTENCY_PROOF_INVALID, "proof does not reach the new root", "proof")
    if fr != root1:
        raise _fail(
            CONSISTENCY_PROOF_INVALID, f"proof does not lead to root1 of size {size1}", "root1"
        )
    if sr != root2:
        raise _fail(
            CONSISTENCY_PROOF_INVALID, f"proof does not lead to root2 of size {size2}", "root2"
        )


# --- streaming root (compact range) --------------------------------------------------------


class RootBuilder:
    """Rebuild a tree root from a stream of leaf hashes in O(log n) memory.

    Keeps only the roots of the perfect subtrees the leaves so far decompose into (one per set
    bit of the size, largest first).  A replicator appends the entries it pulled and compares
    :meth:`root` with the signed checkpoint, without storing the log.
    """

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        self._size = 0
        self._stack: list[bytes] = []

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def append(self, leaf_hash: bytes) -> None:
        """Add the next leaf (already hashed with :func:`leaf_hash`)."""
        stack, h, n = self._stack, leaf_hash, self._size
        # Each trailing 1 bit of the old size is a perfect subtree the new leaf completes.
        while n & 1:
            h = _sha256(NODE_PREFIX + stack.pop() + h).digest()
            n >>= 1
        stack.append(h)
        self._size += 1

    def extend(self, leaf_hashes: Sequence[bytes]) -> None:
        """Append several leaves in order."""
        for h in leaf_hashes:
            self.append(h)

    def root(self) -> bytes:
        """MTH of the leaves appended so far (SHA-256("") when there are none)."""
        stack = self._stack
        if not stack:
            return EMPTY_ROOT
        r = stack[-1]
        for h in reversed(stack[:-1]):
            r = _sha256(NODE_PREFIX + h + r).digest()
        return r


# --- reference implementation (RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1) ------------------------


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1): where MTH splits a range."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(hashes: Sequence[bytes], lo: int, hi: int) -> bytes:
    if hi - lo == 1:
        return hashes[lo]
    k = lo + _split(hi - lo)
    return node_hash(_mth(hashes, lo, k), _mth(hashes, k, hi))


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) computed straight from the RFC definition, over already-hashed leaves.

    Recursive on index bounds (no slicing), so it is O(n) hashes and O(log n) stack: fast
    enough for tests and audits, and obviously the RFC's definition.
    """
    if not hashes:
        return EMPTY_ROOT
    return _mth(hashes, 0, len(hashes))


def reference_inclusion_proof(index: int, hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1, by its recursive definition; the tests' oracle."""
    if not 0 <= index < len(hashes):
        raise ValueError(f"index {index} not in a tree of {len(hashes)} leaves")

    def path(m: int, lo: int, hi: int) -> list[bytes]:
        if hi - lo == 1:
            return []
        k = _split(hi - lo)
        if m < k:
            return [*path(m, lo, lo + k), _mth(hashes, lo + k, hi)]
        return [*path(m - k, lo + k, hi), _mth(hashes, lo, lo + k)]

    return path(index, 0, len(hashes))


def reference_consistency_proof(size1: int, hashes: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1 (via SUBPROOF), for 0 < m ≤ n; the tests' oracle."""
    if not 0 < size1 <= len(hashes):
        raise ValueError(f"size1 {size1} not in 1..{len(hashes)}")

    def subproof(m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
        if m == hi - lo:
            return [] if complete else [_mth(hashes, lo, hi)]
        k = _split(hi - lo)
        if m <= k:
            return [*subproof(m, lo, lo + k, complete), _mth(hashes, lo + k, hi)]
        return [*subproof(m - k, lo + k, hi, False), _mth(hashes, lo, lo + k)]

    return subproof(size1, 0, len(hashes), True)
