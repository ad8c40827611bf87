"""MatchIndex: entry-keyed results, deterministic order, retraction, exact kinds."""

from __future__ import annotations

import pytest

from federation.errors import InputError
from federation.index import EntryRef, ExactIndex, MatchIndex
from federation.index.pdq import PdqIndex

BASE = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


def near(bits: int) -> str:
    """BASE with its lowest ``bits`` bits flipped."""
    return f"{int(BASE, 16) ^ ((1 << bits) - 1):064x}"


def test_pdq_results_sorted_by_distance_origin_index() -> None:
    index = MatchIndex(PdqIndex(open_capacity=4))
    index.add_pdq_batch([near(3), near(0), near(3)], "b.example", [9, 4, 2])
    index.add("pdq", near(3).upper(), EntryRef("a.example", 50))
    index.add("pdq", near(40), EntryRef("a.example", 51))
    got = [(m.distance, m.ref.origin, m.ref.index) for m in index.match("pdq", BASE)]
    assert got == [
        (0, "b.example", 4),
        (3, "a.example", 50),
        (3, "b.example", 2),
        (3, "b.example", 9),
    ]
    assert len(index.match("pdq", BASE, 40)) == 5
    assert index.match("pdq", BASE, 2)[0].ref == EntryRef("b.example", 4)


def test_retraction_stops_matching() -> None:
    index = MatchIndex()
    index.add_pdq_batch([BASE, near(1)], "a.example", [7, 3])
    index.add("md5", "d3" * 16, EntryRef("a.example", 8))
    assert index.remove(EntryRef("a.example", 7))
    assert not index.remove(EntryRef("a.example", 7))
    assert not index.remove(EntryRef("a.example", 99))
    assert not index.remove(EntryRef("nobody.example", 7))
    assert [m.ref.index for m in index.match("pdq", BASE)] == [3]
    assert index.remove(EntryRef("a.example", 8))
    assert index.match("md5", "D3" * 16) == []


def test_exact_kinds() -> None:
    index = MatchIndex()
    sha = "ab" * 32
    index.add("sha256", sha, EntryRef("b.example", 1))
    index.add("sha256", sha, EntryRef("a.example", 2))
    got = index.match("sha256", sha.upper())
    assert [(m.ref.origin, m.distance) for m in got] == [("a.example", 0), ("b.example", 0)]
    assert index.match("md5", "ab" * 16) == []
    with pytest.raises(InputError):
        index.match("sha256", "ab")
    with pytest.raises(InputError):
        index.match("phash", sha)


def test_exact_index_rejects_reused_ref() -> None:
    exact = ExactIndex("md5")  # type: ignore[arg-type]
    ref = EntryRef("a.example", 1)
    exact.add("00" * 16, ref)
    exact.add("00" * 16, ref)
    assert len(exact) == 1
    assert ref in exact
    with pytest.raises(InputError):
        exact.add("11" * 16, ref)
