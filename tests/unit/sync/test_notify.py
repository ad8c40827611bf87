"""The notify doorbell (gossip and poke) and PeerClient's error mapping."""

from __future__ import annotations

import json

import aiohttp
import pytest

from federation.core.entries import leaf_bytes, sign_entry
from federation.errors import InputError, PeerError, VerificationError
from federation.sync.client import PeerClient
from federation.sync.notify import handle_notify
from tests.unit.sync.conftest import NOW, World
from tests.unit.sync.fakenode import Tamper
from tests.unit.sync.helpers import (
    HTTP_KEYS,
    LOG_KEYS,
    FakeLog,
    make_manifest,
    member_of,
    submission,
)


def body(origin: str, note: str) -> bytes:
    return json.dumps({"origin": origin, "checkpoint": note}).encode()


async def test_newer_checkpoint_schedules_a_pull(world: World) -> None:
    await world.rep.sync_origin("police")
    world.log.add(2)
    answer = await handle_notify(world.rep, "relay", body("police", world.log.note()))
    assert answer == {"origin": "police", "outcome": "pull"}
    assert "police" in world.rep._pending  # noqa: SLF001 - the poke is the observable effect
    known = await handle_notify(world.rep, "relay", body("police", world.log.note(13)))
    assert known["outcome"] == "known"


async def test_gossiped_fork_becomes_evidence(world: World) -> None:
    await world.rep.sync_origin("police")
    fork = FakeLog()
    fork.add(8)
    fork.add_leaf(leaf_bytes(sign_entry(submission("police", 55), LOG_KEYS["police"])))
    answer = await handle_notify(world.rep, "relay", body("police", fork.note()))
    assert answer["outcome"] == "frozen"
    assert await world.evidence_count() == 1
    assert world.rep.status()["origins"]["police"]["frozen"]


async def test_hint_ahead_of_the_origin_is_checked_after_the_pull(world: World) -> None:
    # The relay tells us of checkpoint 15; the origin serves 13 to us, the relay serves 15.
    world.log.add(2)
    world.police.tamper["police"] = Tamper(size=13)
    await handle_notify(world.rep, "relay", body("police", world.log.note()))
    assert await world.rep.sync_origin("police") == 15
    assert await world.size() == 15
    assert world.rep.status()["origins"]["police"]["last_source"] == "relay"


async def test_bad_doorbells(world: World) -> None:
    with pytest.raises(InputError) as err:
        await handle_notify(world.rep, "relay", b'{"origin": "police"}')
    assert (err.value.code, err.value.field) == ("invalid_notify", "checkpoint")
    with pytest.raises(InputError) as err:
        await handle_notify(world.rep, "relay", b"not json")
    assert err.value.code == "invalid_notify"
    with pytest.raises(InputError) as err:
        await handle_notify(world.rep, "relay", body("nobody", world.log.note()))
    assert err.value.code == "unknown_log"
    other = FakeLog("relay")
    with pytest.raises(VerificationError):
        await handle_notify(world.rep, "relay", body("police", other.note()))
    assert await world.evidence_count() == 0


async def test_client_errors_are_ours(world: World) -> None:
    manifest = make_manifest(endpoints={"police": world.police.url})
    client = PeerClient(
        member_of(manifest, "police"), key=HTTP_KEYS["self"], keyid="self-http", clock=lambda: NOW
    )
    try:
        with pytest.raises(PeerError) as err:
            await client.get_checkpoint("witness")
        assert err.value.code == "peer_http_error"
        assert "HTTP 404" in err.value.message
        assert "remote code 'unknown_log'" in err.value.message
        await client.notify("police", world.log.note())
        assert world.police.notified == [{"origin": "police", "checkpoint": world.log.note()}]
        assert world.police.destinations[-1] == "police"
    finally:
        await client.close()
    dead = make_manifest(endpoints={"police": "http://127.0.0.1:9"})
    client = PeerClient(
        member_of(dead, "police"),
        key=HTTP_KEYS["self"],
        keyid="self-http",
        clock=lambda: NOW,
        timeout=aiohttp.ClientTimeout(total=5),
    )
    try:
        with pytest.raises(PeerError) as err:
            await client.get_entries("police", 0, 10)
        assert err.value.code == "peer_unreachable"
    finally:
        await client.close()
