"""One entry id twice in one origin's log (spec/sync.md §3 check 8, §5.1): the pull records
self-proving evidence, freezes the origin at its last good size and charges no source."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from federation.log import mirror
from federation.store.schema import entries
from federation.sync.pull import PullSettings
from tests.unit.sync.conftest import ORIGIN, World
from tests.unit.sync.fakenode import Tamper
from tests.unit.sync.helpers import LOG_KEYS, check_duplicate_record


async def listed(world: World) -> list[dict[str, Any]]:
    async with world.store.read() as conn:
        return await mirror.list_evidence(conn)


def proves_itself(record: dict[str, Any], earlier: int, later: int) -> None:
    check_duplicate_record(record, LOG_KEYS["police"].public, ORIGIN, earlier, later)


async def held_count(world: World) -> int:
    async with world.store.read() as conn:
        rows = await conn.execute(select(entries.c.idx).where(entries.c.origin == ORIGIN))
        return len(rows.all())


async def test_an_id_held_before_is_evidence_and_freezes(world: World) -> None:
    assert await world.rep.sync_origin("police") == 13
    world.log.add(1)
    world.log.add_duplicate(of=3)  # index 14
    world.log.add(1)
    assert await world.rep.sync_origin("police") == 0
    assert await world.size() == 13  # the last good size: nothing of the batch applied
    assert await held_count(world) == 13
    assert len(world.applied) == 13
    status = world.rep.status()["origins"]["police"]
    assert status["frozen"].startswith("duplicate_entry_id: leaf 14 ")
    assert status["last_error"] == status["frozen"]
    # The origin misbehaved, not the source that served its signed leaves: nobody is charged.
    assert world.rep.status()["peers"]["police"]["failures"] == 0
    assert world.rep.status()["peers"]["relay"]["failures"] == 0
    [record] = await listed(world)
    assert record["kind"] == "duplicate_entry_id"
    assert (record["note_a"], record["note_b"]) == (world.log.note(13), world.log.note())
    assert record["source"] == "police"
    proves_itself(record, 3, 14)
    # Frozen: later polls fetch nothing more from anyone.
    asked = dict(world.police.checkpoint_requests)
    world.log.add(2)
    assert await world.rep.sync_origin("police") == 0
    assert world.police.checkpoint_requests == asked
    assert await world.evidence_count() == 1


async def test_a_relay_serving_the_duplicate_is_not_charged(world: World) -> None:
    await world.rep.sync_origin("police")
    world.log.add_duplicate(of=0)
    world.police.tamper["police"] = Tamper(status=500)
    await world.rep.sync_origin("police")
    [record] = await listed(world)
    assert record["source"] == "relay"
    proves_itself(record, 0, 13)
    assert world.rep.status()["peers"]["relay"]["failures"] == 0
    assert world.rep.status()["peers"]["police"]["failures"] == 1  # for its 500 only


async def test_catching_up_in_chunks_keeps_the_chunks_before_the_duplicate(world: World) -> None:
    world.rep.settings = PullSettings(page_size=4, chunk=5)
    world.log.add_duplicate(of=2)  # index 13, in the chunk [10, 15)
    world.log.add(3)  # checkpoint 17
    await world.rep.sync_origin("police")
    assert [i for _, i, _ in world.applied] == list(range(10))
    [record] = await listed(world)
    assert (record["size"], len(record["proof"])) == (15, len(world.log.proof(15, 17)))
    proves_itself(record, 2, 13)
    async with world.store.read() as conn:
        trusted = await mirror.load_trusted(conn, ORIGIN)
    assert trusted is not None
    assert trusted.size == 10


async def test_a_repeat_within_one_batch_is_cut_before_and_becomes_evidence(
    world: World,
) -> None:
    """Both leaves arrive in one batch: the batch is applied up to the repeat, which then
    meets the held leaf after every check (spec/sync.md §3 check 6 and 8)."""
    world.log.add_duplicate(of=5)  # index 13; the whole log [0, 16) is one batch
    world.log.add(2)
    await world.rep.sync_origin("police")
    assert [i for _, i, _ in world.applied] == list(range(13))
    [record] = await listed(world)
    assert record["source"] == "police"
    assert record["size"] == 16
    proves_itself(record, 5, 13)
    assert world.rep.status()["peers"]["police"]["failures"] == 0


async def test_a_relay_cannot_fake_a_repeat_within_a_batch(world: World) -> None:
    """A relay copying a genuine leaf over another makes a repeat within the batch: the part
    before it is genuine and applied, the copy fails the root check, and no evidence is made."""
    world.police.tamper["police"] = Tamper(status=500)
    world.relay.tamper["police"] = Tamper(leaves={9: world.log.leaves[4]})
    await world.rep.sync_origin("police")
    assert await world.evidence_count() == 0
    assert world.rep.status()["origins"]["police"]["frozen"] is None
    failures, error = await world.peer_row("relay")
    assert failures == 1
    assert error is not None
    assert "chunk_not_proven" in error or "root_mismatch" in error
    assert [i for _, i, _ in world.applied] == list(range(9))  # genuine, proven to C
