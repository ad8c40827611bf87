"""Local hashing of images: PDQ, MD5 and SHA-256 — the image itself never leaves the member."""

from federation.core.signals import DIHEDRAL_TRANSFORMS
from federation.hashing.image import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    ImageHashes,
    hash_bytes,
    hash_file,
    to_rgb,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DIHEDRAL_TRANSFORMS",
    "ImageError",
    "ImageHashes",
    "hash_bytes",
    "hash_file",
    "to_rgb",
]
