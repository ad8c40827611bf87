"""MatchService on both backends: load from a store written by LogWriter, then live updates,
retraction, opinions, buffering during load, and local-content alerts."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest

from federation.core.entries import (
    EntryRef,
    Opinion,
    Retraction,
    Submission,
)
from federation.core.keys import SigningKey
from federation.core.labels import Labels
from federation.core.manifest import Policy
from federation.core.signals import Md5Signal, PdqSignal, Sha256Signal
from federation.log.writer import AnyEntry, AppendResult, LogWriter
from federation.matching import service as service_mod
from federation.matching import storage
from federation.matching.service import MatchItem, MatchService, NotLoadedError
from federation.store import Store, open_store

LABELS = Labels(categories=("csam",), severity="high", confirmed_by="police")
BASE = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


def near(bits: int) -> str:
    return f"{int(BASE, 16) ^ ((1 << bits) - 1):064x}"


@dataclass
class Member:
    writer: LogWriter
    counter: int = 0

    def _id(self) -> str:
        self.counter += 1
        return f"e-{self.counter}"

    def _base(self) -> dict[str, object]:
        return {"origin": self.writer.member_id, "id": self._id(), "created": 1_700_000_000}

    async def append(self, batch: Sequence[AnyEntry]) -> tuple[AppendResult, list[MatchItem]]:
        result = await self.writer.append(batch)
        items = [(self.writer.origin, a.index, a.signed) for a in result.appended]
        return result, items

    def pdq(self, value: str) -> Submission:
        return Submission(**self._base(), signal=PdqSignal(value=value, quality=90), labels=LABELS)

    def md5(self, value: str) -> Submission:
        return Submission(**self._base(), signal=Md5Signal(value=value), labels=LABELS)

    def sha(self, value: str) -> Submission:
        return Submission(**self._base(), signal=Sha256Signal(value=value), labels=LABELS)

    def retract(self, target: EntryRef) -> Retraction:
        return Retraction(**self._base(), target=target, reason="error")

    def opinion(self, target: EntryRef, verdict: str) -> Opinion:
        return Opinion(**self._base(), target=target, verdict=verdict)


def ref(result: AppendResult, i: int) -> EntryRef:
    a = result.appended[i]
    return EntryRef(origin=a.signed.entry.origin, index=a.index, leaf_hash=a.leaf_hash.hex())


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    opened = await open_store(db_url)
    yield opened
    await opened.close()


async def member(store: Store, name: str) -> Member:
    origin = f"{name}.example/hashfed"
    key = SigningKey.from_seed(origin, hashlib.sha256(name.encode()).digest())
    writer = LogWriter(store, member_id=name, origin=origin, key=key, clock=lambda: 1.7e9)
    await writer.open()
    return Member(writer)


async def test_load_indexes_stored_entries_with_retractions_and_opinions(store: Store) -> None:
    police, platform = await member(store, "police"), await member(store, "platform")
    subs, _ = await police.append(
        [police.pdq(BASE), police.pdq(near(5)), police.pdq(near(60)), police.md5("ab" * 16)]
    )
    await police.append([police.sha("cd" * 32), police.retract(ref(subs, 1))])
    await platform.append([platform.opinion(ref(subs, 0), "false_positive")])
    svc = MatchService(Policy(), page_size=2)  # pages smaller than a log
    assert not svc.ready
    with pytest.raises(NotLoadedError):
        await svc.match([("pdq", BASE)])
    await svc.load(store)
    assert svc.ready
    assert svc.stats()["pdq"] == 2
    assert svc.stats()["retracted"] == 1
    (pdq,) = await svc.match([("pdq", near(2))])
    assert [(m.origin, m.index, m.distance) for m in pdq.matches] == [("police", 0, 2)]
    hit = pdq.matches[0]
    assert hit.leaf_hash == subs.appended[0].leaf_hash.hex()
    assert hit.labels == LABELS.model_dump(mode="json")
    assert hit.status.status == "disputed"
    assert hit.status.opinions["false_positive"] == 1
    md5, sha, wide = await svc.match([("md5", "ab" * 16), ("sha256", "cd" * 32), ("pdq", BASE)], 63)
    assert [m.index for m in md5.matches] == [3]
    assert [m.index for m in sha.matches] == [4]
    assert [m.distance for m in wide.matches] == [0, 60]


async def test_on_entries_updates_without_rebuild(store: Store) -> None:
    police, platform = await member(store, "police"), await member(store, "platform")
    svc = MatchService(Policy())
    await svc.load(store)
    result, items = await police.append([police.pdq(BASE), police.md5("01" * 16)])
    await svc.on_entries(items)
    (found,) = await svc.match([("pdq", near(31))])
    assert [m.index for m in found.matches] == [0]
    assert found.matches[0].status.status == "active"
    assert (await svc.match([("pdq", near(32))]))[0].matches == []
    _, items = await platform.append([platform.opinion(ref(result, 0), "disputed_label")])
    await svc.on_entries(items)
    assert (await svc.match([("pdq", BASE)]))[0].matches[0].status.status == "disputed"
    _, items = await police.append([police.retract(ref(result, 0)), police.retract(ref(result, 1))])
    await svc.on_entries(items)
    assert (await svc.match([("pdq", BASE), ("md5", "01" * 16)])) == [
        service_mod.SignalResult([], False),
        service_mod.SignalResult([], False),
    ]


async def test_quarantine_hides_matches(store: Store) -> None:
    police = await member(store, "police")
    others = [await member(store, n) for n in ("platform", "hotline")]
    result, _ = await police.append([police.pdq(BASE)])
    for other in others:
        await other.append([other.opinion(ref(result, 0), "false_positive")])
    svc = MatchService(Policy(quarantine_false_positives=2))
    await svc.load(store)
    assert (await svc.match([("pdq", BASE)]))[0].matches == []
    assert svc.stats()["quarantined"] == 1
    _, items = await others[0].append([others[0].opinion(ref(result, 0), "true_positive")])
    await svc.on_entries(items)
    assert [m.index for m in (await svc.match([("pdq", BASE)]))[0].matches] == [0]


async def test_entries_arriving_during_load_are_neither_lost_nor_doubled(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    police = await member(store, "police")
    svc = MatchService(Policy())
    _, before = await police.append([police.pdq(BASE)])
    await svc.on_entries(before)  # committed before the load reads sizes: loaded from storage
    real_heads = storage.log_heads

    async def heads_then_append(s: Store) -> dict[str, storage.LogHead]:
        heads = await real_heads(s)
        _, after = await police.append([police.pdq(near(1)), police.md5("02" * 16)])
        await svc.on_entries(after)  # committed after: must come from the buffer
        return heads

    monkeypatch.setattr(storage, "log_heads", heads_then_append)
    await svc.load(store)
    found, md5 = await svc.match([("pdq", BASE), ("md5", "02" * 16)])
    assert [(m.index, m.distance) for m in found.matches] == [(0, 0), (1, 1)]
    assert [m.index for m in md5.matches] == [2]
    assert svc.stats()["pdq"] == 2


async def test_dihedral_query_reports_the_transform(store: Store) -> None:
    police = await member(store, "police")
    svc = MatchService(Policy())
    await svc.load(store)
    _, items = await police.append([police.pdq(BASE)])
    await svc.on_entries(items)
    from federation.matching.dihedral import dihedral_variants

    rotated = dihedral_variants(BASE)[1]  # BASE turned by rot90
    assert (await svc.match([("pdq", rotated)], 10))[0].matches == []
    (found,) = await svc.match([("pdq", rotated)], 10, dihedral=True)
    assert [(m.index, m.distance, m.transform) for m in found.matches] == [(0, 0, "rot270")]


async def test_no_alert_for_an_entry_retracted_or_quarantined_when_it_arrives(
    store: Store,
) -> None:
    """A mirrored batch can hold an entry and its retraction, and opinions from another log can
    arrive before the entry they judge: neither may alert (protocol.md §13)."""
    police, hotline = await member(store, "police"), await member(store, "hotline")
    svc = MatchService(Policy(quarantine_false_positives=1), clock=lambda: 1_800_000_000)
    await svc.load(store)
    await svc.add_local([("upload-1", "md5", "03" * 16), ("upload-2", "md5", "05" * 16)])
    first, subs = await police.append([police.md5("03" * 16), police.md5("05" * 16)])
    _, retraction = await police.append([police.retract(ref(first, 0))])
    _, opinion = await hotline.append([hotline.opinion(ref(first, 1), "false_positive")])
    await svc.on_entries(opinion)  # the hotline's log is mirrored first
    await svc.on_entries(subs + retraction)  # one mirrored batch of police's log
    assert await svc.alerts(0, 100) == []
    _, later = await police.append([police.md5("03" * 16)])
    await svc.on_entries(later)
    assert [a["index"] for a in await svc.alerts(0, 100)] == [3]


async def test_local_content_alerts_on_new_matching_submissions(store: Store) -> None:
    police = await member(store, "police")
    svc = MatchService(Policy(), clock=lambda: 1_800_000_000)
    await svc.load(store)
    ids = await svc.add_local([("upload-1", "pdq", BASE), ("upload-2", "md5", "03" * 16)])
    assert ids == await svc.add_local([("upload-1", "pdq", BASE), ("upload-2", "md5", "03" * 16)])
    _, items = await police.append(
        [police.pdq(near(4)), police.pdq(near(40)), police.md5("03" * 16), police.md5("04" * 16)]
    )
    await svc.on_entries(items)
    got = await svc.alerts(0, 100)
    assert [(a["ref"], a["origin"], a["index"], a["distance"]) for a in got] == [
        ("upload-1", "police", 0, 4),
        ("upload-2", "police", 2, 0),
    ]
    assert got[0]["created"] == 1_800_000_000
    assert await svc.alerts(got[0]["id"], 100) == got[1:]
    restarted = MatchService(Policy())
    await restarted.load(store)
    assert restarted.stats()["local_content"] == 2
