"""The log's Merkle tree as a flat table of stored subtree hashes (pure, no I/O).

A log never recomputes its tree.  Every *complete* perfect subtree — level ``L``, index ``k``,
covering leaves ``[k·2^L, (k+1)·2^L)`` — is hashed once, when its last leaf is appended, and
stored at a fixed integer position, so the storage layer keeps one table
``hashes(position -> 32 bytes)``.  Positions are dense and assigned in append order: appending
leaf ``n`` writes the leaf hash and then each parent it completes, at consecutive positions.
Any subtree hash the RFC needs (a root, a PATH or SUBPROOF element, RFC 9162 §2.1) is either a
stored hash or the right fold of at most log2(n) stored hashes, so appending costs amortised
O(1) (worst O(log n)) reads and every root or proof costs O(log n) reads, fetched in one batch.

The layout is the one Go's ``golang.org/x/mod/sumdb/tlog`` uses, derived here in closed form:
leaf ``j`` is preceded by ``sum_L floor(j / 2^L) = 2j - popcount(j)`` stored hashes.
Verification of what these functions produce lives in :mod:`federation.core.merkle`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final, Protocol

from federation.core.merkle import EMPTY_ROOT, NODE_PREFIX
from federation.errors import InputError, NotFoundError, StorageError

_sha256 = hashlib.sha256

TREE_SIZE_OUT_OF_RANGE: Final = "tree_size_out_of_range"
HASH_NOT_STORED: Final = "hash_not_stored"
HASH_READER_MISMATCH: Final = "hash_reader_mismatch"


class HashReader(Protocol):
    """Fetch stored hashes by position, in the order asked (one batch: one SELECT).

    Callers ask only for positions below :func:`stored_hash_count` of a size the store holds;
    a reader that cannot answer raises (e.g. :class:`~federation.errors.NotFoundError`).
    """

    def __call__(self, positions: Sequence[int], /) -> Sequence[bytes]: ...


def _leaf_position(j: int) -> int:
    """Position of leaf ``j``'s hash: the number of hashes stored before it is appended."""
    return 2 * j - j.bit_count()


def stored_hash_count(n: int) -> int:
    """How many hashes a tree of ``n`` leaves has stored (positions ``0 .. count-1``)."""
    return _leaf_position(n)


def stored_hash_index(level: int, k: int) -> int:
    """Flat storage position of the perfect subtree at ``level`` with index ``k``.

    The subtree is completed, and so stored, right after its last leaf ``(k+1)·2^level - 1``:
    ``level`` positions after that leaf's own hash.
    """
    if level < 0 or k < 0:
        raise InputError(f"level and index must be non-negative, got ({level}, {k})")
    return _leaf_position(((k + 1) << level) - 1) + level


def split_stored_hash_index(position: int) -> tuple[int, int]:
    """Inverse of :func:`stored_hash_index`: the ``(level, k)`` stored at ``position``."""
    if position < 0:
        raise InputError(f"position must be non-negative, got {position}")
    # _leaf_position(j) >= 2j - bit_length(j), so the leaf we want is at most this:
    j = (position + position.bit_length() + 2) // 2
    while _leaf_position(j) > position:
        j -= 1
    level = position - _leaf_position(j)
    return level, j >> level


def _read(read: HashReader, positions: list[int]) -> Sequence[bytes]:
    hashes = read(positions)
    if len(hashes) != len(positions):
        raise StorageError(
            f"hash reader returned {len(hashes)} hashes for {len(positions)} positions",
            code=HASH_READER_MISMATCH,
        )
    return hashes


def hashes_to_store(n: int, leaf_hash: bytes, read: HashReader) -> list[tuple[int, bytes]]:
    """The ``(position, hash)`` pairs to store when appending leaf ``n`` to a tree of ``n``.

    The leaf hash itself, then one parent per trailing 1 bit of ``n`` (each a perfect subtree
    the new leaf completes), built from the left siblings read in one batch.  Positions are
    consecutive, starting at ``stored_hash_count(n)``.
    """
    if n < 0:
        raise InputError(f"tree size must be non-negative, got {n}", code=TREE_SIZE_OUT_OF_RANGE)
    start = 2 * n - n.bit_count()
    out = [(start, leaf_hash)]
    completed = (n ^ (n + 1)).bit_length() - 1
    if completed:
        # Left sibling at level L of the new node is the subtree ending at leaf n - 2^L.
        siblings = _read(read, [_leaf_position(n - (1 << lvl)) + lvl for lvl in range(completed)])
        h = leaf_hash
        for lvl in range(completed):
            h = _sha256(NODE_PREFIX + siblings[lvl] + h).digest()
            out.append((start + lvl + 1, h))
    return out


def _range_nodes(lo: int, hi: int) -> list[int]:
    """Positions of the perfect subtrees that tile ``[lo, hi)``, largest (leftmost) first.

    Every range the RFC asks for starts at a multiple of a power of two at least as large as
    the range, so the tiling follows the bits of ``hi - lo`` and its right fold is the range's
    MTH.
    """
    out = []
    width = hi - lo
    for level in range(width.bit_length() - 1, -1, -1):
        if width >> level & 1:
            out.append(_leaf_position(lo + (1 << level) - 1) + level)
            lo += 1 << level
    return out


def _range_hashes(ranges: list[tuple[int, int]], read: HashReader) -> list[bytes]:
    """MTH of each range, reading every needed stored hash in one batch."""
    tilings = [_range_nodes(lo, hi) for lo, hi in ranges]
    stored = _read(read, [p for tiling in tilings for p in tiling])
    out, at = [], 0
    for tiling in tilings:
        at += len(tiling)
        h = stored[at - 1]
        for i in range(at - 2, at - len(tiling) - 1, -1):
            h = _sha256(NODE_PREFIX + stored[i] + h).digest()
        out.append(h)
    return out


def tree_root(n: int, read: HashReader) -> bytes:
    """MTH of the first ``n`` leaves: fold of the ≤ log2(n) stored subtrees tiling them."""
    if n < 0:
        raise InputError(f"tree size must be non-negative, got {n}", code=TREE_SIZE_OUT_OF_RANGE)
    if n == 0:
        return EMPTY_ROOT
    return _range_hashes([(0, n)], read)[0]


def _split(width: int) -> int:
    return 1 << ((width - 1).bit_length() - 1)


def _path_ranges(index: int, n: int) -> list[tuple[int, int]]:
    """The ranges whose MTHs make PATH(index, D[n]), leaf's sibling first."""
    if not 0 <= index < n:
        raise InputError(f"leaf index {index} is not in a tree of {n} leaves", field="index")
    ranges = []
    lo, hi = 0, n
    while hi - lo > 1:
        k = lo + _split(hi - lo)
        if index < k:
            ranges.append((k, hi))
            hi = k
        else:
            ranges.append((lo, k))
            lo = k
    ranges.reverse()
    return ranges


def inclusion_proof(index: int, n: int, read: HashReader) -> list[bytes]:
    """PATH(index, D[n]) of RFC 9162 §2.1.3.1 from stored hashes, leaf's sibling first.

    Walks the RFC recursion top-down as a loop.  At most one element (a right sibling on the
    tree's right edge) is an incomplete subtree, so at most ~2·log2(n) hashes are read.
    """
    return _range_hashes(_path_ranges(index, n), read)


def inclusion_proofs(indexes: Sequence[int], n: int, read: HashReader) -> list[list[bytes]]:
    """:func:`inclusion_proof` of each of ``indexes`` in the tree of ``n``, in ONE read.

    The proofs of a batch of neighbouring leaves (a receipt per appended entry) share most of
    their upper elements, so each distinct range is tiled, read and folded once.
    """
    paths = [_path_ranges(index, n) for index in indexes]
    slot: dict[tuple[int, int], int] = {}
    for ranges in paths:
        for r in ranges:
            slot.setdefault(r, len(slot))
    hashes = _range_hashes(list(slot), read) if slot else []
    return [[hashes[slot[r]] for r in ranges] for ranges in paths]


def consistency_proof(m: int, n: int, read: HashReader) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1 from stored hashes, for ``0 < m <= n``.

    Size 0 is refused because :func:`~federation.core.merkle.verify_consistency` rejects any
    proof from the empty tree; ``m == n`` gives the empty proof.
    """
    if not 0 < m <= n:
        raise InputError(
            f"consistency proof needs 0 < size1 <= size2, got {m} and {n}", field="size1"
        )
    ranges = []
    lo, hi, complete = 0, n, True
    while hi != m:
        k = lo + _split(hi - lo)
        if m <= k:
            ranges.append((k, hi))
            hi = k
        else:
            ranges.append((lo, k))
            lo, complete = k, False
    if not complete:
        ranges.append((lo, hi))
    ranges.reverse()
    return _range_hashes(ranges, read)


class MemoryHashStore:
    """A list-backed hash table for tests, the auditor and benchmarks.

    Position ``p`` is list item ``p``: positions are dense and assigned in append order, which
    is also what lets a database use an append-only table.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._hashes: list[bytes] = []
        self._size = 0

    @property
    def size(self) -> int:
        """Number of leaves appended."""
        return self._size

    def read_hashes(self, positions: Sequence[int], /) -> list[bytes]:
        """The :class:`HashReader` of this store."""
        hashes = self._hashes
        try:
            return [hashes[p] for p in positions]
        except IndexError:
            raise NotFoundError(
                f"a hash position is beyond the {len(hashes)} stored", code=HASH_NOT_STORED
            ) from None

    def append(self, leaf_hash: bytes) -> int:
        """Append a leaf (already hashed) and return its index."""
        n = self._size
        self._hashes.extend(h for _, h in hashes_to_store(n, leaf_hash, self.read_hashes))
        self._size = n + 1
        return n

    def _size_or_current(self, n: int | None) -> int:
        if n is None:
            return self._size
        if not 0 <= n <= self._size:
            raise InputError(
                f"tree size {n} is beyond the {self._size} leaves stored",
                code=TREE_SIZE_OUT_OF_RANGE,
                field="size",
            )
        return n

    def root(self, n: int | None = None) -> bytes:
        """Root of the first ``n`` leaves (default: all)."""
        return tree_root(self._size_or_current(n), self.read_hashes)

    def inclusion_proof(self, index: int, n: int | None = None) -> list[bytes]:
        """Inclusion proof of leaf ``index`` in the tree of ``n`` leaves (default: all)."""
        return inclusion_proof(index, self._size_or_current(n), self.read_hashes)

    def consistency_proof(self, m: int, n: int | None = None) -> list[bytes]:
        """Consistency proof from size ``m`` to size ``n`` (default: all)."""
        return consistency_proof(m, self._size_or_current(n), self.read_hashes)
