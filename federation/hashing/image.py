"""Local image hashing: PDQ (+ quality, + the 8 dihedral variants), MD5 and SHA-256.

This runs on the member's own machine; only the hashes ever leave it.  PDQ is computed by
``pdqhash`` (the reference C++ implementation) on the image decoded by Pillow, with the EXIF
orientation applied and every Pillow mode converted to 8-bit RGB.  The reference vectors in
``images/pdq/EXPECTED.tsv`` were made from Pillow's plain ``convert("RGB")``; applying the
EXIF orientation does not change any of them (their orientation tags are absent, 0 or 1), and
it is what a viewer shows, so a rotated phone photo hashes like its upright copy.

Hostile input is expected (this is what a hotline receives): non-images, truncated files and
decompression bombs raise :class:`ImageError` with a stable code, never a crash or a warning.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pdqhash
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from federation.core.signals import PDQ_MIN_QUALITY_DEFAULT
from federation.errors import InputError

DEFAULT_MAX_PIXELS = 89_478_485
"""Pixel limit (Pillow's own default): larger images are refused as likely decompression bombs."""


_BACKGROUND = (255, 255, 255)


class ImageError(InputError):
    """An input could not be hashed as an image (code says why: ``image_unreadable``,
    ``image_truncated``, ``image_too_large``)."""

    code = "image_unreadable"


@dataclass(frozen=True)
class ImageHashes:
    """Everything a member shares about one image — and nothing else of it."""

    pdq: str
    """256-bit PDQ hash, 64 lowercase hex characters (reference output format)."""
    quality: int
    """PDQ quality 0–100; below 50 the hash is unreliable and policy rejects it."""
    md5: str
    """MD5 of the file bytes, 32 lowercase hex."""
    sha256: str
    """SHA-256 of the file bytes, 64 lowercase hex."""
    dihedral: tuple[str, ...] | None = None
    """The 8 dihedral PDQ hashes in DIHEDRAL_TRANSFORMS order, when asked for."""

    @property
    def low_quality(self) -> bool:
        """True when the PDQ quality is below the federation's default minimum."""
        return self.quality < PDQ_MIN_QUALITY_DEFAULT


def _bits_hex(bits: npt.ArrayLike) -> str:
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def _scale_to_8bit(image: Image.Image) -> Image.Image:
    """Integer and float modes hold wider ranges than 8 bits: stretch linearly to 0..255."""
    a = np.asarray(image, dtype=np.float64)
    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if image.mode.startswith("I;16"):
        lo, hi = 0.0, 65535.0
    scaled = (
        np.zeros(a.shape) if hi <= lo else (np.nan_to_num(a, nan=lo) - lo) * (255.0 / (hi - lo))
    )
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> npt.NDArray[np.uint8]:
    """Any Pillow mode as an ``(h, w, 3)`` uint8 array: transparency composited on white,
    wide integer/float modes stretched to 8 bits, LAB converted colorimetrically to sRGB."""
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        image = _scale_to_8bit(image)
    elif mode == "LAB":
        transform = ImageCms.buildTransform(
            ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
        )
        converted = ImageCms.applyTransform(image, transform)
        assert converted is not None
        image = converted
    elif mode in ("LA", "PA", "RGBA", "RGBa") or (
        mode in ("P", "L", "RGB", "1") and "transparency" in image.info
    ):
        # Fully opaque pixels composite to themselves, so opaque RGBA files hash exactly as
        # Pillow's convert("RGB") does (the reference vectors' recipe).
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"))


def _decode(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"image is {width}x{height} pixels, over the limit of {max_pixels}",
                    code="image_too_large",
                )
            image.load()
            return ImageOps.exif_transpose(image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(
            f"image refused as a decompression bomb: {exc}", code="image_too_large"
        ) from None
    except UnidentifiedImageError:
        raise ImageError("not an image format Pillow can read", code="image_unreadable") from None
    except OSError as exc:
        code = "image_truncated" if "truncated" in str(exc) else "image_unreadable"
        raise ImageError(f"image could not be decoded: {exc}", code=code) from None
    except (ValueError, SyntaxError, EOFError, IndexError, TypeError) as exc:
        raise ImageError(f"image could not be decoded: {exc}", code="image_unreadable") from None


def hash_bytes(
    data: bytes, *, dihedral: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
) -> ImageHashes:
    """Hash an image given as file bytes (what the CLI reads and a server would receive)."""
    image = _decode(data, max_pixels)
    try:
        rgb = np.ascontiguousarray(to_rgb(image))
    except (ValueError, OSError) as exc:
        raise ImageError(f"image mode {image.mode} could not be converted: {exc}") from None
    if dihedral:
        variants, quality = pdqhash.compute_dihedral(rgb)
        hexes = tuple(_bits_hex(v) for v in variants)
        pdq = hexes[0]
    else:
        bits, quality = pdqhash.compute(rgb)
        hexes, pdq = None, _bits_hex(bits)
    return ImageHashes(
        pdq=pdq,
        quality=int(quality),
        md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
        dihedral=hexes,
    )


def hash_file(
    path: str | Path, *, dihedral: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
) -> ImageHashes:
    """Hash an image file.  OSError (missing, unreadable file) propagates as is."""
    return hash_bytes(Path(path).read_bytes(), dihedral=dihedral, max_pixels=max_pixels)
