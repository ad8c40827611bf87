"""MatchService.set_policy: a manifest update's match policy takes effect on a running service
(spec/sync.md §10) — the default PDQ radius of matches and local-content checks changes for the
next request, and quarantine is re-evaluated for every entry with opinions, both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from federation.core.manifest import Policy
from federation.matching.service import MatchService
from federation.store import Store, open_store
from tests.unit.matching.test_service import BASE, member, near, ref


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    opened = await open_store(db_url)
    yield opened
    await opened.close()


async def indexes(svc: MatchService, value: str, max_distance: int | None = None) -> list[int]:
    (found,) = await svc.match([("pdq", value)], max_distance)
    return [m.index for m in found.matches]


async def test_threshold_change_moves_the_default_radius_both_ways(store: Store) -> None:
    police = await member(store, "police")
    svc = MatchService(Policy(pdq_threshold=31))
    await svc.load(store)
    _, items = await police.append([police.pdq(BASE)])
    await svc.on_entries(items)
    query = near(25)  # between the two radii below
    assert await indexes(svc, query) == [0]

    svc.set_policy(Policy(pdq_threshold=20))
    assert await indexes(svc, query) == []
    assert await indexes(svc, near(20)) == [0]  # the new radius is inclusive
    assert await indexes(svc, query, 25) == [0]  # an explicit max_distance still overrides
    assert svc.index.pdq.radius_default == 20  # segments built from now on are tuned for it

    svc.set_policy(Policy(pdq_threshold=31))
    assert await indexes(svc, query) == [0]


async def test_threshold_change_applies_to_local_content_alerts(store: Store) -> None:
    police = await member(store, "police")
    svc = MatchService(Policy(pdq_threshold=31), clock=lambda: 1_800_000_000)
    await svc.load(store)
    await svc.add_local([("upload-1", "pdq", BASE)])

    svc.set_policy(Policy(pdq_threshold=20))
    _, items = await police.append([police.pdq(near(25))])
    await svc.on_entries(items)
    assert await svc.alerts(0, 100) == []

    svc.set_policy(Policy(pdq_threshold=31))
    _, items = await police.append([police.pdq(near(24))])
    await svc.on_entries(items)
    assert [(a["index"], a["distance"]) for a in await svc.alerts(0, 100)] == [(1, 24)]


async def test_quarantine_is_reevaluated_both_ways(store: Store) -> None:
    police = await member(store, "police")
    platform, hotline, auditor = [await member(store, n) for n in ("platform", "hotline", "ngo")]
    subs, _ = await police.append([police.pdq(BASE), police.pdq(near(3)), police.pdq(near(6))])
    # entry 0: two independent false positives, plus the origin's own (never counted);
    # entry 1: one false positive; entry 2: three
    await police.append([police.opinion(ref(subs, 0), "false_positive")])
    for other in (platform, hotline):
        await other.append([other.opinion(ref(subs, 0), "false_positive")])
    await platform.append([platform.opinion(ref(subs, 1), "false_positive")])
    for other in (platform, hotline, auditor):
        await other.append([other.opinion(ref(subs, 2), "false_positive")])
    svc = MatchService(Policy(quarantine_false_positives=3))
    await svc.load(store)
    assert await indexes(svc, BASE) == [0, 1]
    assert (svc.stats()["with_opinions"], svc.stats()["quarantined"]) == (3, 1)

    svc.set_policy(Policy(quarantine_false_positives=2))  # lowering: entry 0 now reaches it
    assert await indexes(svc, BASE) == [1]
    assert svc.stats()["quarantined"] == 2
    assert svc.book.status(("police", 0)).quarantined

    svc.set_policy(Policy(quarantine_false_positives=1))
    assert await indexes(svc, BASE) == []
    assert svc.stats()["quarantined"] == 3

    svc.set_policy(Policy(quarantine_false_positives=3))  # raising: 0 and 1 are released
    assert await indexes(svc, BASE) == [0, 1]
    assert svc.stats()["quarantined"] == 1
    assert not svc.book.status(("police", 0)).quarantined

    svc.set_policy(Policy(quarantine_false_positives=0))  # 0 disables quarantine
    assert await indexes(svc, BASE) == [0, 1, 2]
    assert svc.stats()["quarantined"] == 0
    assert svc.stats()["with_opinions"] == 3  # the opinions themselves are kept


async def test_opinions_after_a_change_use_the_new_threshold(store: Store) -> None:
    police = await member(store, "police")
    platform, hotline = await member(store, "platform"), await member(store, "hotline")
    subs, _ = await police.append([police.pdq(BASE)])
    svc = MatchService(Policy(quarantine_false_positives=3))
    await svc.load(store)
    svc.set_policy(Policy(quarantine_false_positives=2))
    for other in (platform, hotline):
        _, items = await other.append([other.opinion(ref(subs, 0), "false_positive")])
        await svc.on_entries(items)
    assert await indexes(svc, BASE) == []
    _, items = await hotline.append([hotline.opinion(ref(subs, 0), "true_positive")])
    await svc.on_entries(items)
    assert await indexes(svc, BASE) == [0]


async def test_a_policy_set_before_the_load_finishes_judges_loaded_opinions(
    store: Store,
) -> None:
    police = await member(store, "police")
    platform, hotline = await member(store, "platform"), await member(store, "hotline")
    subs, _ = await police.append([police.pdq(BASE)])
    for other in (platform, hotline):
        await other.append([other.opinion(ref(subs, 0), "false_positive")])
    svc = MatchService(Policy(quarantine_false_positives=0, pdq_threshold=31))
    svc.set_policy(Policy(quarantine_false_positives=2, pdq_threshold=10))
    await svc.load(store)
    assert await indexes(svc, BASE) == []
    assert svc.stats()["quarantined"] == 1
    svc.set_policy(Policy(quarantine_false_positives=0, pdq_threshold=10))
    assert await indexes(svc, near(10)) == [0]
    assert await indexes(svc, near(11)) == []
