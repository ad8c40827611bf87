"""The demo's images, drawn deterministically at run time so no image ships with the package.

:func:`scene` paints a photo-like picture from a seed — a lit background gradient, overlapping
shapes in varied colours, soft texture — because PDQ needs real structure to produce a hash of
good quality (a flat or purely random image scores low).  :func:`demo_images` returns the
reference picture, two edited copies a platform might meet (blurred; resized and recompressed
as JPEG) and an unrelated picture, all as encoded file bytes; :func:`check_images` proves the
premise of the demo before it starts: the reference is hashable (quality >= 50), the edits
stay within the match radius and the unrelated picture is far away.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 512
MIN_QUALITY = 50
EDIT_RADIUS = 31
UNRELATED_MIN_DISTANCE = 64


def scene(seed: int, size: int = SIZE) -> Image.Image:
    """A deterministic photo-like RGB picture for ``seed``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
    angle = rng.uniform(0, 2 * np.pi)
    light = 0.5 + 0.5 * np.cos(angle) * x + 0.5 * np.sin(angle) * y
    base = rng.uniform(40, 200, size=3)
    pixels = np.clip(light[..., None] * base[None, None, :], 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(14, 22))):
        x0, y0 = (int(v) for v in rng.integers(0, size - 40, size=2))
        w, h = (int(v) for v in rng.integers(40, size // 2, size=2))
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        box = (x0, y0, min(size - 1, x0 + w), min(size - 1, y0 + h))
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    texture = rng.normal(0, 6, size=(size, size, 1))
    noisy = np.clip(np.asarray(image, dtype=np.float64) + texture, 0, 255).astype(np.uint8)
    return Image.fromarray(noisy, "RGB").filter(ImageFilter.GaussianBlur(1))


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    """The image as file bytes (PNG, or JPEG at quality 85)."""
    out = io.BytesIO()
    if fmt == "JPEG":
        image.save(out, format="JPEG", quality=85)
    else:
        image.save(out, format=fmt)
    return out.getvalue()


@dataclass(frozen=True)
class DemoImages:
    """Encoded file bytes of the four demo pictures."""

    reference: bytes
    """The confirmed picture the police unit submits (PNG)."""
    blurred: bytes
    """The reference blurred (Gaussian, radius 3), as a re-upload might be."""
    resized: bytes
    """The reference at 60% size, recompressed as JPEG."""
    unrelated: bytes
    """A different picture that must not match."""


def demo_images(seed: int = 2024) -> DemoImages:
    """The demo pictures for ``seed`` (the same bytes on every run and machine)."""
    reference = scene(seed)
    small = reference.resize((SIZE * 3 // 5, SIZE * 3 // 5), Image.Resampling.LANCZOS)
    return DemoImages(
        reference=encode(reference),
        blurred=encode(reference.filter(ImageFilter.GaussianBlur(3))),
        resized=encode(small, "JPEG"),
        unrelated=encode(scene(seed + 7919)),
    )


@dataclass(frozen=True)
class ImageCheck:
    """What the check measured (printed by the demo)."""

    quality: int
    blurred_distance: int
    resized_distance: int
    unrelated_distance: int


def check_images(images: DemoImages) -> ImageCheck:
    """Measure the premise; ``ValueError`` saying which part does not hold."""
    from federation.core.signals import hamming
    from federation.hashing import hash_bytes

    ref = hash_bytes(images.reference)
    result = ImageCheck(
        quality=ref.quality,
        blurred_distance=hamming(ref.pdq, hash_bytes(images.blurred).pdq),
        resized_distance=hamming(ref.pdq, hash_bytes(images.resized).pdq),
        unrelated_distance=hamming(ref.pdq, hash_bytes(images.unrelated).pdq),
    )
    if result.quality < MIN_QUALITY:
        raise ValueError(f"reference PDQ quality {result.quality} < {MIN_QUALITY}")
    for name, distance in (
        ("blurred", result.blurred_distance),
        ("resized", result.resized_distance),
    ):
        if distance > EDIT_RADIUS:
            raise ValueError(f"{name} copy is {distance} bits away (> {EDIT_RADIUS})")
    if result.unrelated_distance < UNRELATED_MIN_DISTANCE:
        raise ValueError(f"unrelated image only {result.unrelated_distance} bits away")
    return result
