"""The 8 dihedral variants (rotations and flips) of a PDQ hash, derived from the hash alone.

A dihedral query lets a platform find a stored image even when the upload is rotated or
mirrored.  The client usually has only the upload's hash, not the 8 hashes of its rotations,
so the node derives them.  PDQ bits are signs of 16×16 DCT coefficients against their median;
rotating or flipping the image permutes the coefficients (a transpose) and negates those of
odd frequency in the flipped direction.  On the bit matrix that is a transpose and a
complement of alternate rows or columns.  It is exact up to the median shift, which moves a few
bits (≤ ~20 of 256 on the reference images) — well inside the default radius 31 and
checked against ``pdqhash.compute_dihedral`` in the tests.

Variant ``k`` answers "what would the hash be after applying DIHEDRAL_TRANSFORMS[k] to the
image"; a query reporting transform ``rot90`` means the stored image is the upload turned by
that transform.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from federation.index import DIHEDRAL_TRANSFORMS

# (transpose, complement odd rows, complement odd columns) per transform, in
# DIHEDRAL_TRANSFORMS order; rows and columns index the 16×16 matrix of the hash bits in the
# order they appear in the hex string (most significant bit first).
_OPS: tuple[tuple[bool, bool, bool], ...] = (
    (False, False, False),  # original
    (True, True, False),  # rot90
    (False, True, True),  # rot180
    (True, False, True),  # rot270
    (False, True, False),  # flipx
    (False, False, True),  # flipy
    (True, False, False),  # flip_plus1 (transpose)
    (True, True, True),  # flip_minus1 (anti-transpose)
)
assert len(_OPS) == len(DIHEDRAL_TRANSFORMS)

_ODD = (np.arange(16) % 2 == 1).astype(np.uint8)
_ODD_ROWS = np.repeat(_ODD[:, None], 16, axis=1)
_ODD_COLS = np.repeat(_ODD[None, :], 16, axis=0)


def _bits(value: str) -> npt.NDArray[np.uint8]:
    raw = np.frombuffer(bytes.fromhex(value), dtype=np.uint8)
    return np.unpackbits(raw).reshape(16, 16)


def dihedral_variants(value: str) -> tuple[str, ...]:
    """The 8 variants of a normalised 64-hex PDQ hash, in DIHEDRAL_TRANSFORMS order."""
    base = _bits(value)
    out: list[str] = []
    for transpose, rows, cols in _OPS:
        bits = base.T.copy() if transpose else base.copy()
        if rows:
            bits ^= _ODD_ROWS
        if cols:
            bits ^= _ODD_COLS
        out.append(np.packbits(bits.reshape(-1)).tobytes().hex())
    return tuple(out)
