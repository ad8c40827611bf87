"""PdqIndex snapshots: a restored index answers exactly like the original and keeps issuing
ids where it stopped; a corrupt, truncated, edited or foreign snapshot is refused with a
StorageError (or, for a flip the checks make harmless, answers identically) — never wrong."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.errors import StorageError
from federation.index import pdq as pdq_module
from federation.index import snapshot
from federation.index.layout import PAIRED_PARTNERS, PAIRED_WIDTHS, chunk_widths, make_layout
from federation.index.pdq import PdqIndex
from federation.index.snapshot import FORMAT_VERSION, MANIFEST

from .hashes import BACKEND_NAMES, as_pairs, at_distance, brute, planted, random_rows

RADII = (0, 5, 31, 32, 44, 63)


def build(seed: int, background: bool = False) -> tuple[PdqIndex, np.ndarray, np.ndarray]:
    """An index with a tuned main segment, small sealed ones, an open one and tombstones."""
    rng = np.random.default_rng(seed)
    q = random_rows(rng, 1)[0]
    rows = np.concatenate([planted(rng, 3000, q, 64), random_rows(rng, 1000)])
    index = PdqIndex(open_capacity=200, background=background, merge_fanout=8)
    index.add(rows[:2000])
    for a in range(2000, rows.shape[0], 90):
        index.add(rows[a : a + 90])
    gone = rng.choice(rows.shape[0], 300, replace=False)
    index.remove(gone)
    alive = np.ones(rows.shape[0], dtype=np.bool_)
    alive[gone] = False
    return index, rows, alive


def assert_same_answers(a: PdqIndex, b: PdqIndex, rows: np.ndarray) -> None:
    for q in rows[:: max(1, rows.shape[0] // 25)]:
        for r in RADII:
            assert as_pairs(a.query(q, r)) == as_pairs(b.query(q, r))


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_round_trip_answers_identically(tmp_path: Path, backend: str) -> None:
    index, rows, alive = build(1)
    stats = index.stats()
    assert len(stats.segments) > 1
    assert stats.open_rows
    assert stats.held > stats.live  # tombstoned rows not yet reclaimed are stored too
    index.save(tmp_path / "snap")
    loaded = PdqIndex.load(tmp_path / "snap", backend=backend, background=False)  # type: ignore[arg-type]
    got = loaded.stats()
    assert (got.segments, got.open_rows, got.live, got.held) == (
        stats.segments,
        stats.open_rows,
        stats.live,
        stats.held,
    )
    assert loaded.radius_default == index.radius_default
    assert_same_answers(index, loaded, rows)
    for q in rows[:5]:
        assert as_pairs(loaded.query(q, 63)) == brute(rows, alive, q, 63)
    # both go on identically: same next id, same answers after the same updates
    more = random_rows(np.random.default_rng(2), 500)
    for ix in (index, loaded):
        assert ix.add(more).tolist() == list(range(rows.shape[0], rows.shape[0] + 500))
        ix.remove([0, 1, 2, rows.shape[0]])
        ix.merge()
        ix.flush()
    assert_same_answers(index, loaded, np.concatenate([rows, more]))


def test_frozen_open_segments_survive(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rows = random_rows(rng, 500)
    index = PdqIndex(open_capacity=200, background=True)
    # Holding the writer lock keeps the worker from starting, so the open segments this
    # frozen stay frozen (awaiting their seal) when the snapshot is taken.
    with index._cond:
        for a in range(0, 500, 100):
            index.add(rows[a : a + 100])
        assert index.stats().open_rows == (200, 200, 100)
        index.save(tmp_path / "snap")
    loaded = PdqIndex.load(tmp_path / "snap", background=False)  # seals them on load
    assert loaded.stats().open_rows == (100,)
    assert loaded.stats().seals == 2
    index.flush()
    assert_same_answers(index, loaded, rows)


def test_save_replaces_a_snapshot_but_nothing_else(tmp_path: Path) -> None:
    index, rows, _ = build(4)
    target = tmp_path / "snap"
    index.save(target)
    index.add(rows[:10])
    index.save(target)
    assert len(PdqIndex.load(target)) == len(index)
    assert not [p for p in tmp_path.iterdir() if p.name != "snap"]  # no temporaries left
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("not an index")
    with pytest.raises(StorageError, match="not a PDQ index snapshot"):
        index.save(other)
    assert (other / "keep.txt").read_text() == "not an index"


def _rewrite_manifest(path: Path, edit: object) -> None:
    """Apply ``edit`` to the manifest body and re-sign it with a valid digest, as a buggy or
    foreign writer would: the structural checks must catch what the digest cannot."""
    manifest = json.loads((path / MANIFEST).read_text())
    edit(manifest["body"])  # type: ignore[operator]
    canonical = json.dumps(manifest["body"], sort_keys=True, separators=(",", ":")).encode()
    manifest["sha256"] = hashlib.sha256(canonical).hexdigest()
    (path / MANIFEST).write_text(json.dumps(manifest))


def _replace_array(path: Path, name: str, arr: np.ndarray) -> None:
    """Swap an array file and fix its manifest entry (size, dtype, CRC) and the digest."""
    import zlib

    np.save(path / name, arr)

    def edit(body: dict) -> None:  # type: ignore[type-arg]
        body["files"][name] = {
            "dtype": arr.dtype.str,
            "shape": list(arr.shape),
            "crc32": zlib.crc32(np.ascontiguousarray(arr).reshape(-1).view(np.uint8).data),
        }

    _rewrite_manifest(path, edit)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PdqIndex, np.ndarray]:
    index, rows, _ = build(7)
    path = tmp_path_factory.mktemp("snapshots") / "good"
    index.save(path)
    return path, index, rows


def _copy(saved: tuple[Path, PdqIndex, np.ndarray], tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(saved[0], dest)
    return dest


def _set(key: str, value: object) -> object:
    return lambda body: body.__setitem__(key, value)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / MANIFEST).unlink(), "cannot read"),
        (lambda p: (p / MANIFEST).write_text("{"), "not JSON"),
        (lambda p: (p / MANIFEST).write_text('{"body": {"format": "x"}}'), "not a hashfed"),
        (lambda p: (p / "alive.npy").unlink(), "cannot load alive.npy"),
        (lambda p: (p / "seg0.words.npy").write_bytes(b"\x93NUMPY"), "cannot load"),
        (
            lambda p: (p / "seg1.postings.npy").write_bytes(
                (p / "seg1.postings.npy").read_bytes()[:-7]
            ),
            "cannot load|dtype/shape",
        ),
        (lambda p: _rewrite_manifest(p, _set("version", FORMAT_VERSION + 1)), "format version"),
        (lambda p: _rewrite_manifest(p, _set("live", 1)), "live count"),
        (lambda p: _rewrite_manifest(p, _set("next_id", 5)), "alive.npy"),
        (
            lambda p: _rewrite_manifest(p, lambda b: b["segments"][0].__setitem__("id_lo", 1)),
            "ids out of range|held twice|held by no",
        ),
        (
            lambda p: _rewrite_manifest(p, lambda b: b["segments"].pop()),
            "held by no segment",
        ),
        (
            lambda p: _rewrite_manifest(
                p, lambda b: b["opens"][0].__setitem__("widths", [31, 33] + [32] * 6)
            ),
            "unsupported layout",
        ),
        (
            lambda p: _replace_array(
                p, "seg0.postings.npy", np.load(p / "seg0.postings.npy") + np.uint32(1)
            ),
            "posting out of range",
        ),
        (
            lambda p: _replace_array(p, "seg0.order.npy", np.zeros(256, dtype=np.int64)),
            "permute",
        ),
        (
            lambda p: _replace_array(
                p, "seg0.offsets.npy", np.load(p / "seg0.offsets.npy")[:, ::-1].copy()
            ),
            "offsets",
        ),
    ],
)
def test_damaged_snapshot_is_refused(
    saved: tuple[Path, PdqIndex, np.ndarray], tmp_path: Path, damage: object, message: str
) -> None:
    path = _copy(saved, tmp_path)
    damage(path)  # type: ignore[operator]
    with pytest.raises(StorageError, match=message):
        PdqIndex.load(path)


def test_edited_manifest_without_digest_is_refused(
    saved: tuple[Path, PdqIndex, np.ndarray], tmp_path: Path
) -> None:
    path = _copy(saved, tmp_path)
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["body"]["segments"][0]["id_lo"] += 1
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(StorageError, match="digest"):
        PdqIndex.load(path)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_bit_flip_is_refused_or_harmless(
    saved: tuple[Path, PdqIndex, np.ndarray], tmp_path: Path, data: st.DataObject
) -> None:
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "snap"
    shutil.copytree(saved[0], path)
    files = sorted(p.name for p in path.iterdir())
    name = data.draw(st.sampled_from(files))
    raw = bytearray((path / name).read_bytes())
    bit = data.draw(st.integers(0, 8 * len(raw) - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    (path / name).write_bytes(bytes(raw))
    try:
        loaded = PdqIndex.load(path, background=False)
    except StorageError:
        return
    assert_same_answers(saved[1], loaded, saved[2])


def test_queries_planted_at_every_distance_after_restore(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    q = random_rows(rng, 1)[0]
    rows = np.stack([at_distance(rng, q, d) for d in range(65)])
    index = PdqIndex(open_capacity=8, background=False)
    for a in range(0, 65, 5):
        index.add(rows[a : a + 5])
    index.save(tmp_path / "s")
    loaded = PdqIndex.load(tmp_path / "s")
    alive = np.ones(65, dtype=np.bool_)
    for r in range(64):
        assert (
            as_pairs(loaded.query(q, r))
            == brute(rows, alive, q, r)
            == [(d, d) for d in range(r + 1)]
        )


def test_layout_the_format_cannot_hold_is_not_saved(tmp_path: Path) -> None:
    """A layout carrying more than bit order and widths (as a newer kind would) must not be
    written as if it were a plain one: it would load as something else."""
    index = PdqIndex(background=False)
    index.add(random_rows(np.random.default_rng(1), 300))
    index.seal()
    seg = index._view.segments[0]
    odd = dataclasses.replace(seg.layout, starts=tuple(reversed(seg.layout.starts)))
    contents = snapshot.Contents(
        settings=snapshot.Settings(31, 20, 65536, 4),
        next_id=300,
        live=300,
        alive=np.ones(300, dtype=np.bool_),
        segments=(dataclasses.replace(seg, layout=odd),),
        opens=(),
    )
    with pytest.raises(StorageError, match="cannot be stored"):
        snapshot.write(tmp_path / "s", contents, threads=1)
    assert not (tmp_path / "s").exists()


def test_paired_layout_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(12)
    paired = make_layout(rng.permutation(256), PAIRED_WIDTHS, PAIRED_PARTNERS)
    monkeypatch.setattr(pdq_module, "choose_layout", lambda *_, **__: paired)
    q = random_rows(rng, 1)[0]
    rows = planted(rng, 2000, q, 64)
    index = PdqIndex(open_capacity=500, background=False)
    index.add(rows[:1500])
    for a in range(1500, rows.shape[0], 40):
        index.add(rows[a : a + 40])
    index.save(tmp_path / "s")
    loaded = PdqIndex.load(tmp_path / "s")
    layouts = [s.layout for s in loaded._view.segments] + [o.layout for o in loaded._view.opens]
    assert len(layouts) >= 2
    assert all(layout.partners == PAIRED_PARTNERS for layout in layouts)
    assert_same_answers(index, loaded, rows)
    alive = np.ones(rows.shape[0], dtype=np.bool_)
    for r in RADII:
        assert as_pairs(loaded.query(q, r)) == brute(rows, alive, q, r)


@pytest.mark.parametrize("paired", [False, True])
def test_format_1_loads_unless_a_sealed_segment_is_paired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, paired: bool
) -> None:
    """Format 1 stored paired segments' suffixes without partner bits: read as format 2 they
    would make probes reject true neighbours, so such a snapshot is refused; any other
    format 1 snapshot means what it meant and loads."""
    rng = np.random.default_rng(13)
    widths, partners = (PAIRED_WIDTHS, PAIRED_PARTNERS) if paired else (chunk_widths(11), ())
    layout = make_layout(rng.permutation(256), widths, partners)
    monkeypatch.setattr(pdq_module, "choose_layout", lambda *_, **__: layout)
    q = random_rows(rng, 1)[0]
    rows = planted(rng, 1500, q, 40)
    index = PdqIndex(open_capacity=500, background=False)
    index.add(rows[:1000])
    index.add(rows[1000:1100])
    index.save(tmp_path / "s")
    _rewrite_manifest(tmp_path / "s", _set("version", 1))
    if paired:
        with pytest.raises(StorageError, match="paired layout in format 1"):
            PdqIndex.load(tmp_path / "s")
        return
    loaded = PdqIndex.load(tmp_path / "s")
    assert_same_answers(index, loaded, rows)
