"""Replicator against fake peers over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from federation.core.entries import leaf_bytes, sign_entry
from tests.unit.sync.conftest import NOW, ORIGIN, World
from tests.unit.sync.fakenode import Tamper
from tests.unit.sync.helpers import LOG_KEYS, T0, FakeLog, make_manifest, submission


async def test_honest_pull_in_pages_then_incremental(world: World) -> None:
    assert await world.rep.sync_origin("police") == 13
    assert [i for _, i, _ in world.applied] == list(range(13))
    assert {o for o, _, _ in world.applied} == {ORIGIN}
    world.log.add(6)
    assert await world.rep.sync_origin("police") == 6
    assert await world.size() == 19
    assert await world.rep.sync_origin("police") == 0
    status = world.rep.status()
    assert status["origins"]["police"]["size"] == 19
    assert status["origins"]["police"]["last_source"] == "police"
    assert set(world.police.destinations) == {"police"}
    assert world.relay.destinations == []


async def test_origin_down_falls_back_to_relay(world: World) -> None:
    world.police.tamper["police"] = Tamper(status=500)
    assert await world.rep.sync_origin("police") == 13
    failures, error = await world.peer_row("police")
    assert failures == 1
    assert error is not None
    assert "peer_http_error" in error
    assert "remote code 'internal_error'" in error
    assert "secret detail" not in error
    assert world.rep.status()["peers"]["police"]["backoff_until"] > NOW
    assert set(world.relay.destinations) == {"relay"}
    # In backoff now: the next pull goes to the relay without asking the origin.
    world.log.add(2)
    before = len(world.police.destinations)
    assert await world.rep.sync_origin("police") == 2
    assert len(world.police.destinations) == before
    await world.rep.reset_backoff("police")
    assert (await world.peer_row("police"))[0] == 0


async def test_tampered_leaf_applies_nothing_and_blames_the_server(world: World) -> None:
    leaf = world.log.leaves[5].replace(b'"value":"0000', b'"value":"1000', 1)
    world.police.tamper["police"] = Tamper(leaves={5: leaf})
    swapped = {6: world.log.leaves[7], 7: world.log.leaves[6]}
    world.relay.tamper["police"] = Tamper(leaves=swapped)
    assert await world.rep.sync_origin("police") == 0
    assert await world.size() == 0
    assert world.applied == []
    assert "bad_entry_signature" in (await world.peer_row("police"))[1]  # type: ignore[operator]
    assert "root_mismatch" in (await world.peer_row("relay"))[1]  # type: ignore[operator]
    assert "relay: root_mismatch" in world.rep.status()["origins"]["police"]["last_error"]


async def test_dropped_entry_applies_nothing(world: World) -> None:
    await world.rep.sync_origin("police")
    world.log.add(3)
    world.police.tamper["police"] = Tamper(size=15, note=world.log.note())
    world.relay.tamper["police"] = Tamper(status=500)
    assert await world.rep.sync_origin("police") == 0
    assert await world.size() == 13
    assert "leaves_not_contiguous" in (await world.peer_row("police"))[1]  # type: ignore[operator]


async def test_forked_checkpoint_is_evidence_and_freezes(world: World) -> None:
    await world.rep.sync_origin("police")
    fork = FakeLog()
    fork.add(12)
    fork.add_leaf(leaf_bytes(sign_entry(submission("police", 77), LOG_KEYS["police"])))
    world.police.tamper["police"] = Tamper(note=fork.note())
    assert await world.rep.sync_origin("police") == 0
    assert await world.evidence_count() == 1
    status = world.rep.status()["origins"]["police"]
    assert status["frozen"]
    assert "inconsistent_checkpoint" in status["frozen"]
    world.police.tamper.clear()
    world.log.add(2)
    assert await world.rep.sync_origin("police") == 0
    assert await world.size() == 13


@pytest.mark.parametrize("server", ["relay", "police"])
async def test_bad_consistency_proof(world: World, server: str) -> None:
    await world.rep.sync_origin("police")
    world.log.add(4)
    bad = [bytes(32)] * 3
    if server == "relay":
        world.police.tamper["police"] = Tamper(status=500)
        world.relay.tamper["police"] = Tamper(proof=bad)
    else:
        world.police.tamper["police"] = Tamper(proof=bad)
        world.relay.tamper["police"] = Tamper(status=500)
    assert await world.rep.sync_origin("police") == 0
    assert await world.size() == 13
    frozen = world.rep.status()["origins"]["police"]["frozen"]
    # A relay's garbage proof is the relay's fault; the origin failing to prove its own
    # checkpoints consistent is the origin's, and is evidence.
    assert bool(frozen) is (server == "police")
    assert await world.evidence_count() == (server == "police")


async def test_origin_rollback_and_stale_relay(world: World) -> None:
    await world.rep.sync_origin("police")
    world.police.tamper["police"] = Tamper(size=9)
    world.relay.tamper["police"] = Tamper(size=11)
    assert await world.rep.sync_origin("police") == 0
    assert "checkpoint_rollback" in (await world.peer_row("police"))[1]  # type: ignore[operator]
    assert world.rep.status()["peers"]["relay"]["failures"] == 0
    assert await world.evidence_count() == 0


async def test_suspended_origin_later_entries_refused(world: World) -> None:
    world.rep.manifest = make_manifest(
        endpoints={"police": world.police.url, "relay": world.relay.url},
        police={"status": "suspended", "suspended_at": T0 + 13},
    )
    assert await world.rep.sync_origin("police") == 13
    world.log.add(1)
    assert await world.rep.sync_origin("police") == 0
    assert "member_suspended" in world.rep.status()["origins"]["police"]["last_error"]
    assert await world.size() == 13


async def test_run_polls_and_pokes_coalesce(world: World) -> None:
    world.rep.poll_interval = 3600
    task = asyncio.create_task(world.rep.run())
    try:
        await world.wait_applied(13)  # the first poll
        world.log.add(3)
        asked = world.police.checkpoint_requests["police"]
        for _ in range(5):
            world.rep.poke("police")
        await world.wait_applied(16)
    finally:
        world.rep.stop()
        await asyncio.wait_for(task, 10)
    assert world.police.checkpoint_requests["police"] == asked + 1
    assert [i for _, i, _ in world.applied] == list(range(16))
    # Logs a relay does not mirror (404 there) cost it nothing.
    assert world.rep.status()["peers"]["relay"]["failures"] == 0


async def test_a_relay_serving_its_own_log_well_stays_blamed_for_tampering(world: World) -> None:
    """Serving one log honestly does not clear a verification failure for another: otherwise
    a malicious relay could alternate its own good log with tampered copies of others' and
    never be backed off.  A good answer for the tampered origin itself does clear it."""
    world.police.tamper["police"] = Tamper(status=500)
    leaf = world.log.leaves[5].replace(b'"value":"0000', b'"value":"1000', 1)
    world.relay.tamper["police"] = Tamper(leaves={5: leaf})
    assert await world.rep.sync_origin("police") == 0
    assert world.rep.status()["peers"]["relay"]["failures"] == 1
    world.rep._peer_health["relay"].backoff_until = 0  # let the backoff lapse
    assert await world.rep.sync_origin("relay") >= 0
    assert world.rep.status()["origins"]["relay"]["last_source"] == "relay"
    assert world.rep.status()["peers"]["relay"]["failures"] == 1
    await world.rep.reset_backoff("relay")  # a doorbell proves liveness, not honesty
    assert world.rep.status()["peers"]["relay"]["failures"] == 1
    del world.relay.tamper["police"]
    world.rep._peer_health["relay"].backoff_until = 0
    assert await world.rep.sync_origin("police") == 13
    assert world.rep.status()["peers"]["relay"]["failures"] == 0
