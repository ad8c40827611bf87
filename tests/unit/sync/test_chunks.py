"""Catching up in chunks: each chunk proven against the signed checkpoint, resumable, and
what a node relays is always a signed checkpoint no larger than the leaves it holds."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from federation.core.entries import leaf_bytes, sign_entry
from federation.log import mirror, reader
from federation.store.schema import mirror_progress
from federation.sync.pull import PullSettings
from tests.unit.sync.conftest import ORIGIN, World
from tests.unit.sync.fakenode import Tamper
from tests.unit.sync.helpers import LOG_KEYS, T0, FakeLog, make_manifest, submission


def chunked(world: World, chunk: int = 5) -> None:
    world.rep.settings = PullSettings(page_size=4, chunk=chunk)


def forged(n: int) -> bytes:
    """A well-formed leaf for index ``n`` signed by the wrong key."""
    return leaf_bytes(sign_entry(submission("police", n), LOG_KEYS["relay"]))


async def progress(world: World) -> int | None:
    async with world.store.read() as conn:
        row = (await conn.execute(select(mirror_progress.c.size))).first()
    return None if row is None else int(row.size)


async def test_catch_up_in_chunks_applies_every_leaf_once(world: World) -> None:
    chunked(world)
    assert await world.rep.sync_origin("police") == 13
    assert [i for _, i, _ in world.applied] == list(range(13))
    assert await world.size() == 13
    assert await progress(world) is None  # complete: the signed state is the held state
    async with world.store.read() as conn:
        assert (await reader.log_state(conn, ORIGIN)).note == world.log.note()


async def test_bad_chunk_keeps_earlier_chunks_and_relays_nothing_unsigned(world: World) -> None:
    chunked(world)
    for node in (world.police, world.relay):
        node.tamper["police"] = Tamper(leaves={7: forged(7)})
    await world.rep.sync_origin("police")
    assert len(world.applied) == 5  # chunk [0, 5) proven and kept, [5, 10) refused
    assert await progress(world) == 5
    assert await world.size() == 0  # no signed checkpoint of size ≤ 5 held: nothing served
    error = world.rep.status()["origins"]["police"]["last_error"]
    assert "bad_entry_signature" in error
    async with world.store.read() as conn:
        trusted = await mirror.load_trusted(conn, ORIGIN)
    assert trusted is not None
    assert (trusted.size, trusted.root) == (5, world.log.trusted(5).root)
    # The origin moves on; the next pull resumes at 5 against the newer checkpoint.
    world.police.tamper.clear()
    world.log.add(4)
    await world.rep.reset_backoff("police")
    assert await world.rep.sync_origin("police") == 12
    assert [i for _, i, _ in world.applied] == list(range(17))
    assert await world.size() == 17
    assert await progress(world) is None


async def test_bad_end_proof_is_the_servers_fault(world: World) -> None:
    chunked(world)
    world.police.tamper["police"] = Tamper(proof=[b"\x00" * 32])
    assert await world.rep.sync_origin("police") == 13  # the relay serves honest proofs
    failures, error = await world.peer_row("police")
    assert failures == 1
    assert error is not None
    assert "chunk_not_proven" in error
    assert world.rep.status()["origins"]["police"]["frozen"] is None
    assert await world.evidence_count() == 0


async def test_restart_hands_unsigned_leaves_to_the_index_again(world: World) -> None:
    chunked(world)
    for node in (world.police, world.relay):
        node.tamper["police"] = Tamper(leaves={7: forged(7)})
    await world.rep.sync_origin("police")
    assert len(world.applied) == 5
    world.applied.clear()
    await world.rep.load()  # as after a restart: the index loads only up to the signed size
    assert [i for _, i, _ in world.applied] == list(range(5))
    assert all(e.entry.id == f"sub-{i}" for _, i, e in world.applied)


# --- chunks end at the origin's suspended_size (spec/sync.md §3.1) --------------------------


def suspend(world: World, size: int) -> None:
    world.rep.manifest = make_manifest(
        endpoints={"police": world.police.url, "relay": world.relay.url},
        police={"status": "suspended", "suspended_size": size},
    )


def fetched_from(world: World, start: int) -> list[int]:
    """Every leaf index at or beyond ``start`` that any source was asked for."""
    return sorted(
        {
            i
            for node in (world.police, world.relay)
            for member, first, limit in node.entry_requests
            if member == "police"
            for i in range(first, first + limit)
            if i >= start
        }
    )


@pytest.mark.parametrize("vouched", [0, 1, 5, 7, 12])
async def test_a_node_behind_takes_every_vouched_entry(world: World, vouched: int) -> None:
    chunked(world)  # chunks of 5: [0, 5), [5, 10), ... unless cut at the suspended size
    suspend(world, vouched)
    await world.rep.sync_origin("police")  # fails at the refused leaf (nothing counted)
    assert [i for _, i, _ in world.applied] == list(range(vouched))
    assert await progress(world) == (vouched or None)
    assert await world.size() == 0  # no signed checkpoint of exactly that size was served
    assert "member_suspended" in world.rep.status()["origins"]["police"]["last_error"]
    # Beyond the vouched size each source was asked for one leaf, the refused one.
    assert fetched_from(world, vouched) == [vouched]


async def test_a_node_partway_resumes_to_the_suspended_size(world: World) -> None:
    chunked(world)
    world.police.tamper["police"] = world.relay.tamper["police"] = Tamper(size=3)
    assert await world.rep.sync_origin("police") == 3
    world.police.tamper.clear()
    world.relay.tamper.clear()
    suspend(world, 9)
    # [3, 8) then [8, 9), cut at 9 rather than [8, 13): then leaf 9 alone is refused.
    await world.rep.sync_origin("police")
    assert [i for _, i, _ in world.applied] == list(range(9))
    assert await progress(world) == 9
    assert fetched_from(world, 9) == [9]
    assert await world.size() == 3  # the last signed checkpoint held, still served


@pytest.mark.parametrize("vouched", [13, 20])
async def test_a_checkpoint_within_the_suspended_size_is_applied_whole(
    world: World, vouched: int
) -> None:
    chunked(world)
    suspend(world, vouched)
    assert await world.rep.sync_origin("police") == 13
    assert await world.size() == 13
    assert await progress(world) is None
    assert world.rep.status()["origins"]["police"]["last_error"] is None


async def test_a_fork_beyond_the_suspended_size_is_still_evidence(world: World) -> None:
    """A thief with the log key signs a longer history that rewrites a vouched entry: the
    one-leaf chunk beyond the size still checks the checkpoint's consistency first."""
    chunked(world)
    suspend(world, 7)
    await world.rep.sync_origin("police")
    assert await progress(world) == 7
    fork = FakeLog()
    fork.add(3)
    fork.add(11, created=T0 + 900)  # leaf 3 onwards differ: inconsistent with what we hold
    world.police.logs["police"] = world.relay.logs["police"] = fork
    await world.rep.reset_backoff("police")
    await world.rep.sync_origin("police")
    assert world.rep.status()["origins"]["police"]["frozen"]
    assert await world.evidence_count() == 1
    assert await progress(world) == 7
