"""Dihedral variants derived from the hash bits agree with hashing the transformed image."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from federation.core.signals import hamming
from federation.hashing import DIHEDRAL_TRANSFORMS, hash_file
from federation.matching.dihedral import dihedral_variants

HEX64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
INVOLUTIONS = ("rot180", "flipx", "flipy", "flip_plus1", "flip_minus1")


@settings(max_examples=50)
@given(HEX64)
def test_original_is_identity_and_flips_are_involutions(value: str) -> None:
    variants = dict(zip(DIHEDRAL_TRANSFORMS, dihedral_variants(value), strict=True))
    assert variants["original"] == value
    for name in INVOLUTIONS:
        assert (
            dict(zip(DIHEDRAL_TRANSFORMS, dihedral_variants(variants[name]), strict=True))[name]
            == value
        ), name
    rot90 = dict(zip(DIHEDRAL_TRANSFORMS, dihedral_variants(variants["rot90"]), strict=True))
    assert rot90["rot270"] == value


def test_close_to_pdqhash_dihedral_on_reference_images(shared: Path) -> None:
    images = shared / "images" / "pdq"
    for path in (images / "dih" / "bridge-1-original.jpg", images / "labelme" / "q0746.jpg"):
        hashes = hash_file(path, dihedral=True)
        assert hashes.dihedral is not None
        reference = hashes.dihedral
        derived = dihedral_variants(hashes.pdq)
        distances = [hamming(a, b) for a, b in zip(derived, hashes.dihedral, strict=True)]
        assert max(distances) <= 24, (path.name, distances)
        # and every derived variant is closest to its own transform, not another one
        for k, variant in enumerate(derived):
            nearest = min(range(8), key=lambda j: hamming(variant, reference[j]))
            assert hamming(variant, reference[nearest]) == distances[k]
