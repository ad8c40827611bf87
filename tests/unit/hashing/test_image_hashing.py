"""Local hashing reproduces the reference PDQ vectors and refuses hostile input cleanly."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from federation.core.signals import hamming
from federation.hashing import DIHEDRAL_TRANSFORMS, ImageError, hash_bytes, hash_file, to_rgb
from federation.index import EntryRef, MatchIndex

REPO = Path(__file__).resolve().parents[3]
PDQ_DIR = REPO / ".." / "shared" / "images" / "pdq"


def expected() -> list[tuple[str, str, int]]:
    tsv = PDQ_DIR / "EXPECTED.tsv"
    if not tsv.exists():
        pytest.skip(f"shared PDQ vectors not found at {tsv}")
    rows = []
    for line in tsv.read_text().splitlines():
        if line and not line.startswith("#"):
            path, pdq, quality = line.split("\t")
            rows.append((path, pdq, int(quality)))
    return rows


def test_every_reference_image_hashes_exactly() -> None:
    rows = expected()
    assert len(rows) >= 30
    for path, pdq, quality in rows:
        got = hash_file(PDQ_DIR / path)
        assert (path, got.pdq, got.quality) == (path, pdq, quality)


def test_low_quality_images_are_flagged() -> None:
    flagged = {path for path, _, q in expected() if q < 50}
    assert flagged  # the vectors include some
    for path, _, _ in expected():
        assert hash_file(PDQ_DIR / path).low_quality == (path in flagged)


def test_bridge_mods_match_original_within_31() -> None:
    expected()
    mods = sorted((PDQ_DIR / "bridge-mods").glob("*.jpg"))
    original = hash_file(PDQ_DIR / "bridge-mods" / "aaa-orig.jpg").pdq
    index = MatchIndex()
    index.add("pdq", original, EntryRef("nca.example", 7))
    assert len(mods) > 5
    for mod in mods:
        h = hash_file(mod).pdq
        assert hamming(h, original) <= 31, mod.name
        matches = index.match("pdq", h)
        assert [m.ref for m in matches] == [EntryRef("nca.example", 7)]


def test_every_dihedral_variant_matches_through_a_dihedral_query() -> None:
    expected()
    original = hash_file(PDQ_DIR / "dih" / "bridge-1-original.jpg").pdq
    index = MatchIndex()
    index.add("pdq", original, EntryRef("hotline.example", 0))
    transforms = set()
    for path in sorted((PDQ_DIR / "dih").glob("*.jpg")):
        h = hash_file(path, dihedral=True)
        assert h.dihedral is not None
        assert h.dihedral[0] == h.pdq
        plain = index.match("pdq", h.pdq)
        matches = index.match("pdq", h.pdq, dihedral=h.dihedral)
        assert len(matches) == 1, path.name
        assert matches[0].distance <= 31, path.name
        assert matches[0].transform in DIHEDRAL_TRANSFORMS
        transforms.add(matches[0].transform)
        if "original" not in path.name:
            assert plain == []  # only the dihedral query finds the rotated/flipped copies
    assert len(transforms) >= 5  # each file needs its own inverse transform


def _png(mode: str, size: tuple[int, int] = (64, 48)) -> Image.Image:
    rng = np.random.default_rng(3)
    base = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    if mode in ("I", "F"):
        return Image.fromarray(np.asarray(base.convert("L")).astype(np.int32) * 257).convert(mode)
    if mode in ("LAB", "HSV", "YCbCr", "CMYK"):
        return base.convert(mode) if mode != "LAB" else Image.new("LAB", size, (50, 10, 200))
    return base.convert(mode)


@pytest.mark.parametrize(
    "mode", ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "F", "LAB", "HSV"]
)
def test_every_pillow_mode_hashes(mode: str) -> None:
    image = _png(mode)
    assert image.mode == mode
    rgb = to_rgb(image)
    assert rgb.dtype == np.uint8
    assert rgb.shape == (48, 64, 3)
    if mode in ("I", "F"):  # stretched to the full 8-bit range, not clipped to white
        assert rgb.min() < 20
        assert rgb.max() > 235
    buf = io.BytesIO()
    fmt = "TIFF" if mode in ("CMYK", "YCbCr", "I", "F", "LAB", "PA") else "PNG"
    if mode != "HSV":  # no Pillow writer stores HSV; the in-memory path above covers it
        image.save(buf, format=fmt)
        h = hash_bytes(buf.getvalue())
        assert len(h.pdq) == 64
        assert 0 <= h.quality <= 100


def test_alpha_is_composited_on_white() -> None:
    transparent = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    white = Image.new("RGB", (64, 64), (255, 255, 255))
    out = []
    for image in (transparent, white):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        out.append(hash_bytes(buf.getvalue()).pdq)
    assert out[0] == out[1]


def test_file_digests_are_of_the_bytes() -> None:
    import hashlib

    data = (PDQ_DIR / "misc" / "wee.jpg").read_bytes() if PDQ_DIR.exists() else b""
    if not data:
        pytest.skip("shared images absent")
    h = hash_bytes(data)
    assert h.md5 == hashlib.md5(data).hexdigest()
    assert h.sha256 == hashlib.sha256(data).hexdigest()


def test_non_image_is_refused() -> None:
    with pytest.raises(ImageError) as err:
        hash_bytes(b"this is not an image")
    assert err.value.code == "image_unreadable"


def test_truncated_image_is_refused() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (256, 256), (10, 200, 30)).save(buf, format="JPEG")
    with pytest.raises(ImageError) as err:
        hash_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert err.value.code in ("image_truncated", "image_unreadable")


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image (the classic decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [20_000, 100_000])
def test_decompression_bomb_is_refused(side: int) -> None:
    with pytest.raises(ImageError) as err:
        hash_bytes(_bomb_png(side, side))
    assert err.value.code == "image_too_large"


def test_own_pixel_limit_applies() -> None:
    buf = io.BytesIO()
    Image.new("L", (100, 100)).save(buf, format="PNG")
    with pytest.raises(ImageError) as err:
        hash_bytes(buf.getvalue(), max_pixels=5000)
    assert err.value.code == "image_too_large"
