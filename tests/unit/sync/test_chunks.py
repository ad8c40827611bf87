"""Catching up in chunks: each chunk proven against the signed checkpoint, resumable, and
what a node relays is always a signed checkpoint no larger than the leaves it holds."""

from __future__ import annotations

from sqlalchemy import select

from federation.core.entries import leaf_bytes, sign_entry
from federation.log import mirror, reader
from federation.store.schema import mirror_progress
from federation.sync.pull import PullSettings
from tests.unit.sync.conftest import ORIGIN, World
from tests.unit.sync.fakenode import Tamper
from tests.unit.sync.helpers import LOG_KEYS, submission


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
