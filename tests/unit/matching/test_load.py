"""The bulk load from storage (aggregated pages, one index add for every log) must give exactly
what applying the same entries one call at a time gives, on both backends: PDQ and exact
submissions of several members, retractions across logs (also of an entry in a later page or
another log), opinions whose latest verdict wins, pages cutting through all of it."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import numpy as np
import pytest
from sqlalchemy import update

from federation.core.manifest import Policy
from federation.errors import StorageError
from federation.index import pdq_words
from federation.matching import storage
from federation.matching.service import MatchItem, MatchService
from federation.store import Store, open_store
from federation.store.schema import entries
from tests.unit.matching.test_service import BASE, member, near, ref


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    opened = await open_store(db_url)
    yield opened
    await opened.close()


def _hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


async def _answers(svc: MatchService, queries: list[tuple[str, str]]) -> list[object]:
    found = await svc.match(queries, 63)
    return [
        [(m.origin, m.index, m.distance, m.status.status, m.status.quarantined) for m in r.matches]
        for r in found
    ]


async def test_load_equals_live_application(store: Store) -> None:
    rng = random.Random(5)
    police, hotline, platform = (
        await member(store, "police"),
        await member(store, "hotline"),
        await member(store, "platform"),
    )
    live = MatchService(Policy(quarantine_false_positives=2))
    await live.load(store)
    items: list[MatchItem] = []
    subs, got = await police.append(
        [police.pdq(BASE), police.pdq(near(3)), police.md5("ab" * 16), police.pdq(near(9))]
        + [police.pdq(_hex(rng)) for _ in range(20)]
    )
    items += got
    hot, got = await hotline.append(
        [hotline.pdq(near(4)), hotline.sha("cd" * 32), hotline.pdq(near(12))]
    )
    items += got
    _, got = await police.append([police.retract(ref(subs, 1)), police.retract(ref(subs, 2))])
    items += got
    _, got = await platform.append(
        [
            platform.opinion(ref(subs, 0), "false_positive"),
            platform.opinion(ref(hot, 0), "false_positive"),
            platform.opinion(ref(hot, 0), "true_positive"),  # the latest verdict wins
        ]
    )
    items += got
    _, got = await hotline.append([hotline.opinion(ref(subs, 0), "false_positive")])
    items += got
    _, got = await hotline.append([hotline.retract(ref(hot, 2)), hotline.pdq(near(20))])
    items += got
    await live.on_entries(items)

    queries = [("pdq", BASE), ("pdq", near(12)), ("md5", "ab" * 16), ("sha256", "cd" * 32)]
    want = await _answers(live, queries)
    assert want[0]  # the comparison is not between two empty answers
    for page in (1, 2, 7, 1000):  # pages cutting through runs, retractions and opinions
        loaded = MatchService(Policy(quarantine_false_positives=2), page_size=page)
        await loaded.load(store)
        assert await _answers(loaded, queries) == want, page
        assert loaded.stats() == live.stats(), page


async def test_load_pages_decode_every_hash_and_index(store: Store) -> None:
    rng = random.Random(9)
    police = await member(store, "police")
    values = [_hex(rng) for _ in range(50)]
    await police.append([police.pdq(v) for v in values[:30]] + [police.md5("01" * 16)])
    await police.append([police.pdq(v) for v in values[30:]])
    origin = police.writer.origin
    pages = [p async for p in storage.load_pages(store, origin, 3, 51, 16)]
    indexes = np.concatenate([p.pdq_indexes for p in pages])
    words = np.concatenate([p.pdq_words for p in pages])
    expected = [i for i in range(3, 51) if i != 30]  # index 30 is the MD5 submission
    assert indexes.tolist() == expected
    hashes = [values[i] if i < 30 else values[i - 1] for i in expected]
    assert np.array_equal(words, pdq_words(hashes))
    others = [r for p in pages for r in p.others]
    assert [(r.idx, r.kind, r.signal_kind, r.signal_value) for r in others] == [
        (30, "submission", "md5", "01" * 16)
    ]


async def test_a_stored_hash_that_is_not_hex_fails_the_load(store: Store) -> None:
    police = await member(store, "police")
    await police.append([police.pdq(BASE), police.pdq(near(1))])
    async with store.transaction() as conn:
        await conn.execute(update(entries).where(entries.c.idx == 1).values(signal_value="zz" * 32))
    svc = MatchService(Policy())
    with pytest.raises(StorageError, match="not 64 hex"):
        await svc.load(store)
    assert not svc.ready
