"""Live updates apply consecutive PDQ submissions of one member as one index batch; the result
must be what applying them one by one gives: retractions after their targets in the same
call, members interleaved, retracted entries never indexed, MD5 alongside."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from federation.core.manifest import Policy
from federation.matching.service import MatchItem, MatchService
from federation.store import Store, open_store
from tests.unit.matching.test_service import BASE, member, near, ref


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    opened = await open_store(db_url)
    yield opened
    await opened.close()


async def test_one_call_with_pdq_runs_retractions_and_two_members(store: Store) -> None:
    police, hotline = await member(store, "police"), await member(store, "hotline")
    svc = MatchService(Policy())
    await svc.load(store)
    subs, police_items = await police.append(
        [police.pdq(BASE), police.pdq(near(3)), police.md5("ab" * 16), police.pdq(near(5))]
    )
    _, retract_items = await police.append([police.retract(ref(subs, 1))])
    hot, hotline_items = await hotline.append([hotline.pdq(near(4)), hotline.pdq(near(6))])
    _, later_items = await police.append([police.pdq(near(7))])
    # one call: police PDQ run, an MD5 inside it, the retraction of the run's second entry,
    # then another member's run, then police again
    items: list[MatchItem] = [*police_items, *retract_items, *hotline_items, *later_items]
    await svc.on_entries(items)
    (found,) = await svc.match([("pdq", BASE)], 10)
    assert sorted((m.origin, m.index, m.distance) for m in found.matches) == [
        ("hotline", 0, 4),
        ("hotline", 1, 6),
        ("police", 0, 0),
        ("police", 3, 5),
        ("police", 5, 7),
    ]
    assert [m.index for m in (await svc.match([("md5", "ab" * 16)]))[0].matches] == [2]
    assert svc.stats()["pdq"] == 5
    assert svc.stats()["retracted"] == 1
    # a submission whose retraction is already known is not indexed when it arrives again
    await svc.on_entries(police_items[1:2])
    assert svc.stats()["pdq"] == 5
    assert hot.checkpoint.size == 2
