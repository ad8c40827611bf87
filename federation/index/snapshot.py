"""PDQ index snapshots: a directory of ``.npy`` arrays and a checksummed manifest.

The one place in :mod:`federation.index` that does I/O.  A snapshot lets a node restart without
rebuilding its index from the log: loading reads the arrays back as they were (no sorting, no
layout tuning), so 10M hashes restore in the time it takes to read ~1 GB.

Layout of the directory::

    manifest.json          {"body": {...}, "sha256": hex SHA-256 of the body's canonical JSON}
    alive.npy              tombstones, one bool per id ever issued
    seg<i>.<field>.npy     a sealed segment's words, ids_off, order, offsets, postings, suffixes
    open<i>.<field>.npy    an open segment's rows (words) and layout (order); its chains are
                           rebuilt on load, which is O(rows) and keeps chain pointers out of
                           the file

The body names the format (``hashfed-pdq-index``) and its version (:data:`FORMAT_VERSION`), the
index settings, every segment's scalars, and for every file its dtype, shape and CRC-32.
Loading checks all of it — manifest digest, format and version, each file's presence, dtype,
shape and CRC-32, and the invariants queries rely on (layouts are permutations, offsets are
monotone and end at the row count, postings and ids are in range, ids are sorted and every
live id is held by exactly one segment) — and raises :class:`~federation.errors.StorageError`
naming the first problem, so a truncated, corrupted or foreign snapshot can never answer
queries.  CRC-32 guards against accidents (torn writes, bit rot), not against an attacker who
can write the directory.

Saving writes a sibling temporary directory and renames it into place (the previous snapshot,
if any, is replaced only once the new one is complete).  Files are not fsynced: after a crash a
snapshot may fail to load, and the caller rebuilds the index from its log instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from federation.errors import StorageError
from federation.index.layout import PDQ_BITS, PDQ_WORDS, Layout, make_layout
from federation.index.segment import Segment, suffix_dtype

FORMAT = "hashfed-pdq-index"
"""Value of the manifest's ``format`` field."""

FORMAT_VERSION = 2
"""Bumped whenever the meaning of a file or field changes; other versions are refused, except
as :data:`OLDER_VERSIONS` says."""

OLDER_VERSIONS: tuple[int, ...] = (1,)
"""Versions still read.  Version 2 put partner bits into the suffixes of segments with a paired
layout; version 1 wrote such segments with plain suffixes, which a version 2 probe would read
as partner bits and wrongly reject rows by.  So a version 1 snapshot loads only if none of its
sealed segments is paired (open segments store rows, not suffixes)."""

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 1 << 24


@dataclass(frozen=True)
class Settings:
    """Index parameters stored with the snapshot (they shape its segments)."""

    radius_default: int
    max_prefix_bits: int
    open_capacity: int
    merge_fanout: int


@dataclass(frozen=True, eq=False)
class OpenRows:
    """An open segment as stored: its rows, not its chains."""

    id_lo: int
    capacity: int
    layout: Layout
    words: npt.NDArray[np.uint64]
    frozen: bool
    """Frozen (awaiting its seal) rather than taking adds."""


@dataclass(frozen=True, eq=False)
class Contents:
    """Everything a snapshot holds."""

    settings: Settings
    next_id: int
    live: int
    alive: npt.NDArray[np.bool_]
    segments: tuple[Segment, ...]
    opens: tuple[OpenRows, ...]


def _fail(path: Path, why: str) -> StorageError:
    return StorageError(f"PDQ index snapshot {path}: {why}")


def _digest(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


def _crc(arr: npt.NDArray[Any]) -> int:
    return zlib.crc32(np.ascontiguousarray(arr).reshape(-1).view(np.uint8).data)


def _check_stored_whole(path: Path, layout: Layout) -> None:
    """A layout is stored as its bit order, chunk widths and chunk pairs; refuse to save one
    that carries more (a newer kind of layout), which would load as something else."""
    again = make_layout(layout.order, layout.widths, layout.partners)
    for f in dataclasses.fields(Layout):
        a, b = getattr(layout, f.name), getattr(again, f.name)
        same = (
            all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
            if isinstance(a, tuple) and a and isinstance(a[0], np.ndarray)
            else np.array_equal(a, b)
        )
        if not same:
            raise _fail(
                path, f"layout field {f.name!r} cannot be stored in format {FORMAT_VERSION}"
            )


def write(path: Path, contents: Contents, *, threads: int) -> None:
    """Write ``contents`` as a snapshot directory at ``path`` (replacing a previous snapshot)."""
    layouts = [s.layout for s in contents.segments] + [o.layout for o in contents.opens]
    for layout in {id(x): x for x in layouts}.values():
        _check_stored_whole(path, layout)
    arrays: dict[str, npt.NDArray[Any]] = {"alive.npy": contents.alive}
    segments = []
    for i, seg in enumerate(contents.segments):
        segments.append(
            {
                "id_lo": seg.id_lo,
                "rows": seg.rows,
                "prefix_bits": seg.prefix_bits,
                "widths": list(seg.layout.widths),
                "partners": list(seg.layout.partners),
            }
        )
        arrays[f"seg{i}.words.npy"] = seg.words
        arrays[f"seg{i}.ids_off.npy"] = seg.ids_off
        arrays[f"seg{i}.order.npy"] = seg.layout.order
        arrays[f"seg{i}.offsets.npy"] = seg.offsets
        arrays[f"seg{i}.postings.npy"] = seg.postings
        arrays[f"seg{i}.suffixes.npy"] = seg.suffixes
    opens = []
    for i, op in enumerate(contents.opens):
        opens.append(
            {
                "id_lo": op.id_lo,
                "capacity": op.capacity,
                "rows": int(op.words.shape[0]),
                "widths": list(op.layout.widths),
                "partners": list(op.layout.partners),
                "frozen": op.frozen,
            }
        )
        arrays[f"open{i}.words.npy"] = op.words
        arrays[f"open{i}.order.npy"] = op.layout.order
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:

        def save(item: tuple[str, npt.NDArray[Any]]) -> tuple[str, dict[str, Any]]:
            name, arr = item
            arr = np.ascontiguousarray(arr)
            np.save(tmp / name, arr, allow_pickle=False)
            return name, {"dtype": arr.dtype.str, "shape": list(arr.shape), "crc32": _crc(arr)}

        with ThreadPoolExecutor(threads) as pool:
            files = dict(pool.map(save, arrays.items()))
        s = contents.settings
        body = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "settings": {
                "radius_default": s.radius_default,
                "max_prefix_bits": s.max_prefix_bits,
                "open_capacity": s.open_capacity,
                "merge_fanout": s.merge_fanout,
            },
            "next_id": contents.next_id,
            "live": contents.live,
            "segments": segments,
            "opens": opens,
            "files": files,
        }
        manifest = {"body": body, "sha256": _digest(body)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, sort_keys=True, indent=1))
        _replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace(tmp: Path, path: Path) -> None:
    if not path.exists():
        os.replace(tmp, path)
        return
    if not path.is_dir() or (any(path.iterdir()) and not (path / MANIFEST).is_file()):
        raise _fail(path, "exists and is not a PDQ index snapshot; not replaced")
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if old.exists():
        shutil.rmtree(old)
    os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def read(path: Path, *, threads: int) -> Contents:
    """Load and check a snapshot directory; raises StorageError naming the first problem."""
    body = _read_manifest(path)
    try:
        return _Reader(path, body, threads).contents()
    except StorageError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
        raise _fail(path, f"malformed manifest or array ({type(exc).__name__}: {exc})") from None


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        with open(path / MANIFEST, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise _fail(path, f"cannot read {MANIFEST} ({exc.strerror or exc})") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise _fail(path, f"{MANIFEST} is too large")
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _fail(path, f"{MANIFEST} is not JSON") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("body"), dict):
        raise _fail(path, f"{MANIFEST} has no body")
    body: dict[str, Any] = manifest["body"]
    if body.get("format") != FORMAT:
        raise _fail(path, f"not a {FORMAT} snapshot")
    version = body.get("version")
    if isinstance(version, bool) or version not in (FORMAT_VERSION, *OLDER_VERSIONS):
        raise _fail(path, f"format version {body.get('version')!r}, expected {FORMAT_VERSION}")
    if manifest.get("sha256") != _digest(body):
        raise _fail(path, f"{MANIFEST} digest does not match its body")
    return body


def _is_width(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 32


def _int(value: object, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"expected an integer >= {lo}, got {value!r}")
    return value


class _Reader:
    """Loads the files a manifest body names, checking each against it."""

    def __init__(self, path: Path, body: dict[str, Any], threads: int) -> None:
        self.path = path
        self.body = body
        files = body["files"]
        if not isinstance(files, dict):
            raise _fail(path, "manifest has no file list")
        self.files: dict[str, Any] = files
        self.threads = threads

    def _fail(self, why: str) -> StorageError:
        return _fail(self.path, why)

    def _load_all(self, names: list[str]) -> dict[str, npt.NDArray[Any]]:
        def one(name: str) -> tuple[str, npt.NDArray[Any]]:
            meta = self.files.get(name)
            if not isinstance(meta, dict):
                raise self._fail(f"{name} is not listed in the manifest")
            try:
                arr = np.load(self.path / name, allow_pickle=False)
            except Exception as exc:  # a damaged header fails in many ways (even SyntaxError)
                raise self._fail(f"cannot load {name} ({type(exc).__name__}: {exc})") from None
            if arr.dtype.str != meta["dtype"] or list(arr.shape) != meta["shape"]:
                want = f"{meta['dtype']}{tuple(meta['shape'])}"
                raise self._fail(f"{name} is {arr.dtype.str}{arr.shape}, manifest says {want}")
            if _crc(arr) != meta["crc32"]:
                raise self._fail(f"{name} fails its CRC-32 (corrupted)")
            return name, arr

        with ThreadPoolExecutor(self.threads) as pool:
            return dict(pool.map(one, names))

    def _layout(self, order: npt.NDArray[Any], meta: dict[str, Any], what: str) -> Layout:
        widths, partners = meta["widths"], meta["partners"]
        if not isinstance(widths, list) or not all(_is_width(w) for w in widths):
            raise self._fail(f"{what}: unsupported layout (chunk widths)")
        if not isinstance(partners, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) for p in partners
        ):
            raise self._fail(f"{what}: unsupported layout (chunk pairs)")
        if order.dtype != np.int64 or order.shape != (PDQ_BITS,):
            raise self._fail(f"{what}: unsupported layout (bit order)")
        try:
            return make_layout(order, tuple(widths), tuple(partners))
        except (ValueError, IndexError) as exc:
            raise self._fail(f"{what}: unsupported layout ({exc})") from None

    def contents(self) -> Contents:
        b = self.body
        st = b["settings"]
        settings = Settings(
            radius_default=_int(st["radius_default"]),
            max_prefix_bits=_int(st["max_prefix_bits"], 1),
            open_capacity=_int(st["open_capacity"], 1),
            merge_fanout=_int(st["merge_fanout"], 1),
        )
        next_id, live = _int(b["next_id"]), _int(b["live"])
        seg_meta: list[dict[str, Any]] = b["segments"]
        open_meta: list[dict[str, Any]] = b["opens"]
        names = ["alive.npy"]
        for i in range(len(seg_meta)):
            fields = ("words", "ids_off", "order", "offsets", "postings", "suffixes")
            names += [f"seg{i}.{f}.npy" for f in fields]
        for i in range(len(open_meta)):
            names += [f"open{i}.words.npy", f"open{i}.order.npy"]
        arrays = self._load_all(names)
        alive = arrays["alive.npy"]
        if alive.dtype != np.bool_ or alive.shape != (next_id,):
            raise self._fail("alive.npy does not hold one bool per id")
        if int(alive.sum()) != live:
            raise self._fail("live count differs from the tombstones")
        held = np.zeros(next_id, dtype=np.bool_)
        segments = tuple(
            self._segment(i, m, arrays, settings, held) for i, m in enumerate(seg_meta)
        )
        opens = tuple(self._open(i, m, arrays, held) for i, m in enumerate(open_meta))
        if (alive & ~held).any():
            raise self._fail("a live id is held by no segment")
        return Contents(settings, next_id, live, alive, segments, opens)

    def _claim(self, held: npt.NDArray[np.bool_], ids: npt.NDArray[np.int64], what: str) -> None:
        if ids.shape[0] and (ids[0] < 0 or ids[-1] >= held.shape[0]):
            raise self._fail(f"{what}: ids out of range")
        if held[ids].any():
            raise self._fail(f"{what}: an id is held twice")
        held[ids] = True

    def _segment(
        self,
        i: int,
        meta: dict[str, Any],
        arrays: dict[str, npt.NDArray[Any]],
        settings: Settings,
        held: npt.NDArray[np.bool_],
    ) -> Segment:
        what = f"segment {i}"

        def get(field: str) -> npt.NDArray[Any]:
            return arrays[f"seg{i}.{field}.npy"]

        layout = self._layout(get("order"), meta, what)
        if layout.paired and self.body["version"] != FORMAT_VERSION:
            raise self._fail(
                f"{what}: paired layout in format {self.body['version']}, whose "
                "suffixes lack the partner bits; rebuild the index"
            )
        rows, id_lo, p = _int(meta["rows"]), _int(meta["id_lo"]), _int(meta["prefix_bits"], 1)
        m = len(layout.widths)
        if not max(layout.widths) - 16 <= p <= min(layout.widths):
            raise self._fail(f"{what}: prefix bits out of range")
        words, ids_off = get("words"), get("ids_off")
        offsets, postings, suffixes = get("offsets"), get("postings"), get("suffixes")
        expect: list[tuple[npt.NDArray[Any], Any, tuple[int, ...]]] = [
            (words, np.uint64, (rows, PDQ_WORDS)),
            (ids_off, np.uint32, (rows,)),
            (offsets, np.uint32, (m, (1 << p) + 1)),
            (postings, np.uint32, (m, rows)),
            (suffixes, suffix_dtype(layout, p), (m, rows)),
        ]
        for arr, dtype, shape in expect:
            if arr.dtype != dtype or arr.shape != shape:
                raise self._fail(f"{what}: array of dtype/shape {arr.dtype}{arr.shape}")
        if rows:
            if (np.diff(ids_off.astype(np.int64)) <= 0).any():
                raise self._fail(f"{what}: ids not strictly increasing")
            if int(postings.max()) >= rows:
                raise self._fail(f"{what}: posting out of range")
        if (offsets[:, 0] != 0).any() or (offsets[:, -1] != rows).any():
            raise self._fail(f"{what}: offsets do not span the rows")
        if (np.diff(offsets.astype(np.int64), axis=1) < 0).any():
            raise self._fail(f"{what}: offsets decrease")
        self._claim(held, ids_off.astype(np.int64) + id_lo, what)
        return Segment(words, ids_off, id_lo, layout, p, offsets, postings, suffixes)

    def _open(
        self,
        i: int,
        meta: dict[str, Any],
        arrays: dict[str, npt.NDArray[Any]],
        held: npt.NDArray[np.bool_],
    ) -> OpenRows:
        what = f"open segment {i}"
        layout = self._layout(arrays[f"open{i}.order.npy"], meta, what)
        rows, id_lo = _int(meta["rows"]), _int(meta["id_lo"])
        capacity = _int(meta["capacity"], max(rows, 1))
        if capacity >= 2**32 - 1:
            raise self._fail(f"{what}: capacity out of range")
        words = arrays[f"open{i}.words.npy"]
        if words.dtype != np.uint64 or words.shape != (rows, PDQ_WORDS):
            raise self._fail(f"{what}: rows of dtype/shape {words.dtype}{words.shape}")
        if not isinstance(meta["frozen"], bool):
            raise self._fail(f"{what}: frozen is not a boolean")
        self._claim(held, np.arange(id_lo, id_lo + rows, dtype=np.int64), what)
        return OpenRows(id_lo, capacity, layout, words, meta["frozen"])
