"""A manifest update applies to a running node without a restart (spec/sync.md §10): moved
peers are asked at their new address (a pull in flight is not broken), dropped peers are no
longer asked or rung, backoff from an old address is cleared, our checkpoint is cosigned by a
witness that moved, and requests are authenticated and checked by the new version."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from federation.client.signer import SignedSession
from federation.config import SyncSection, load_config
from federation.core.checkpoint import checkpoint_cosignatures
from federation.core.keys import SigningKey
from federation.core.manifest import Manifest, TransportKey, sign_manifest
from federation.core.note import SignedNote
from federation.log import reader
from federation.log.writer import LogWriter
from federation.node import open_context
from federation.server.app import create_app
from federation.store import Store, open_store
from federation.sync.client import PeerClient
from federation.sync.pull import AppliedItem
from federation.sync.service import SyncService
from federation.sync.witness import Witness
from tests.integration.harness import free_ports, make_federation, wait_until
from tests.unit.sync.conftest import NOW
from tests.unit.sync.fakenode import FakeNode, Tamper, serving
from tests.unit.sync.helpers import (
    HTTP_KEYS,
    LOG_KEYS,
    WITNESS_KEY,
    FakeLog,
    make_manifest,
    member_of,
)
from tests.unit.sync.test_witness_cosign import serve_witness, sub


class GatedNode(FakeNode):
    """A fake node whose ``entries`` answers wait for :attr:`gate`: a pull held in flight."""

    def __init__(self, member_id: str, logs: dict[str, FakeLog]) -> None:
        super().__init__(member_id, logs)
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = asyncio.Event()

    async def entries(self, request: web.Request) -> web.Response:
        self.waiting.set()
        await self.gate.wait()
        return await super().entries(request)


def dead_url() -> str:
    """A loopback address nothing listens on (connection refused at once)."""
    return f"http://127.0.0.1:{free_ports(1)[0]}"


def manifest(
    endpoints: dict[str, str],
    *,
    drop: Iterable[str] = (),
    version: int = 1,
    witness_quorum: int = 0,
) -> Manifest:
    """Version ``version`` of the test manifest with the given endpoints (the others dead:
    refused at once, never a DNS lookup), without the members in ``drop``."""
    urls = {m: dead_url() for m in ("police", "relay", "self", "witness")}
    urls.update(endpoints)
    base = make_manifest(endpoints=urls, witness_quorum=witness_quorum)
    members = tuple(
        m.model_copy(update={"endpoint": urls[m.id]}) for m in base.members if m.id not in drop
    )
    return base.model_copy(update={"members": members, "version": version})


def service(
    store: Store, m: Manifest, applied: list[AppliedItem], *, self_id: str = "self", **kw: Any
) -> SyncService:
    return SyncService(
        store=store,
        manifest=m,
        self_id=self_id,
        transport_key=HTTP_KEYS[self_id],
        keyid=f"{self_id}-http",
        clock=lambda: NOW,
        settings=SyncSection(page_size=4, chunk_size=4),
        on_applied=applied.extend,
        **kw,
    )


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = await open_store(db_url)
    yield s
    await s.close()


def peer(svc: SyncService, member_id: str) -> dict[str, Any]:
    row: dict[str, Any] = svc.status()["peers"][member_id]
    return row


# --- the peer client ----------------------------------------------------------------------


async def test_repointed_client_finishes_a_request_in_flight_and_sends_later_ones_anew() -> None:
    log = FakeLog()
    log.add(5)
    old, new = GatedNode("police", {"police": log}), FakeNode("police", {"police": log})
    async with serving(old, new):
        m = make_manifest(endpoints={"police": old.url})
        client = PeerClient(
            member_of(m, "police"), key=HTTP_KEYS["self"], keyid="self-http", clock=lambda: NOW
        )
        try:
            old.gate.clear()
            in_flight = asyncio.create_task(client.get_entries("police", 0, 5))
            await old.waiting.wait()
            assert client.repoint(new.url)
            assert not client.repoint(new.url + "/")  # the same address: nothing to do
            assert client.endpoint == new.url.rstrip("/")
            page = await client.get_entries("police", 0, 2)  # at the new address at once
            assert [i for i, _ in page.entries] == [0, 1]
            assert client.open_sessions == 2  # the old one is still in use
            old.gate.set()
            held = await in_flight  # not broken by the move
            assert [leaf for _, leaf in held.entries] == log.leaves
            assert client.open_sessions == 1  # the old address's session closed once idle
            assert old.entry_requests == [("police", 0, 5)]
            assert new.entry_requests == [("police", 0, 2)]
        finally:
            await client.close()
        assert client.open_sessions == 0


async def test_retired_client_still_answers_a_late_request_then_closes() -> None:
    log = FakeLog()
    log.add(2)
    node = FakeNode("police", {"police": log})
    async with serving(node):
        m = make_manifest(endpoints={"police": node.url})
        client = PeerClient(
            member_of(m, "police"), key=HTTP_KEYS["self"], keyid="self-http", clock=lambda: NOW
        )
        try:
            assert await client.get_checkpoint("police") == log.note()
            assert client.open_sessions == 1
            client.retire()
            assert client.open_sessions == 0
            # the rest of a pull that began before the peer was dropped
            assert await client.get_checkpoint("police") == log.note()
            assert client.open_sessions == 0
        finally:
            await client.close()


# --- the sync service --------------------------------------------------------------------


async def test_update_during_a_pull_moves_the_rest_to_the_new_endpoint(store: Store) -> None:
    log = FakeLog()
    log.add(13)
    old, new = GatedNode("police", {"police": log}), FakeNode("police", {"police": log})
    relay = FakeNode("relay", {"police": log})
    applied: list[AppliedItem] = []
    async with serving(old, new, relay):
        v1 = manifest({"police": old.url, "relay": relay.url})
        svc = service(store, v1, applied)
        await svc.replicator.load()
        client = svc.clients["police"]
        try:
            old.gate.clear()
            pull = asyncio.create_task(svc.replicator.sync_origin("police"))
            await old.waiting.wait()
            svc.set_manifest(manifest({"police": new.url, "relay": relay.url}, version=2))
            old.gate.set()
            assert await pull == 13  # the pull in flight finishes, verified and applied
            assert len(applied) == 13
            # its first chunk was already asked of the old address; the rest of the new one
            assert old.entry_requests == [("police", 0, 4)]
            assert [s for _, s, _ in new.entry_requests] == [4, 8, 12]
            assert relay.entry_requests == []
            assert peer(svc, "police")["failures"] == 0
            assert svc.clients["police"] is client
            assert client.endpoint == new.url.rstrip("/")
            log.add(3)
            asked_old = old.checkpoint_requests.get("police", 0)
            assert await svc.replicator.sync_origin("police") == 3
            assert old.checkpoint_requests.get("police", 0) == asked_old  # never again
            assert new.checkpoint_requests["police"] == 1
        finally:
            await svc.close()
        assert client.open_sessions == 0


async def test_dropped_peer_finishes_its_pull_then_is_neither_asked_nor_rung(
    store: Store,
) -> None:
    log = FakeLog()
    log.add(13)
    police = FakeNode("police", {"police": log})
    police.tamper["police"] = Tamper(status=500)  # the origin fails: the relay is asked
    relay = GatedNode("relay", {"police": log, "relay": FakeLog("relay")})
    applied: list[AppliedItem] = []
    async with serving(police, relay):
        endpoints = {"police": police.url, "relay": relay.url}
        svc = service(store, manifest(endpoints), applied)
        await svc.replicator.load()
        dropped = svc.clients["relay"]
        try:
            relay.gate.clear()
            pull = asyncio.create_task(svc.replicator.sync_origin("police"))
            await relay.waiting.wait()
            svc.set_manifest(manifest(endpoints, drop=["relay"], version=2))
            assert sorted(svc.clients) == ["police", "witness"]
            assert "relay" not in svc.replicator.origins()
            relay.gate.set()
            assert await pull == 13  # finished with the dropped peer, no crash
            assert dropped.open_sessions == 0  # and its session closed after
            assert sorted(svc.status()["peers"]) == ["police", "witness"]
            police.tamper.clear()
            await svc.replicator.reset_backoff("police")  # as when police rings us
            svc.doorbell.ring("self", "a checkpoint")

            async def rung() -> bool:
                return bool(police.notified)

            await wait_until(rung, within=10, what="police rung")
            asked = len(relay.entry_requests), dict(relay.checkpoint_requests)
            log.add(2)
            assert await svc.replicator.sync_origin("police") == 2
            assert (len(relay.entry_requests), dict(relay.checkpoint_requests)) == asked
            assert relay.notified == []
        finally:
            await svc.close()


async def test_move_clears_the_backoff_of_the_old_address_and_it_is_stored(
    store: Store,
) -> None:
    log = FakeLog()
    log.add(13)
    new = FakeNode("police", {"police": log})
    applied: list[AppliedItem] = []
    async with serving(new):
        svc = service(store, manifest({}), applied)
        await svc.replicator.load()
        try:
            assert await svc.replicator.sync_origin("police") == 0  # police and relay dead
            assert peer(svc, "police")["failures"] == 1
            assert peer(svc, "relay")["failures"] == 1
            v2 = manifest({"police": new.url, "relay": svc.clients["relay"].endpoint}, version=2)
            svc.set_manifest(v2)
            assert (peer(svc, "police")["failures"], peer(svc, "police")["backoff_until"]) == (
                0,
                0,
            )
            assert peer(svc, "relay")["failures"] == 1  # it did not move: still backed off
        finally:
            await svc.close()
        restarted = service(store, v2, applied)
        await restarted.replicator.load()
        try:
            assert peer(restarted, "police")["failures"] == 0  # written through
            assert peer(restarted, "relay")["failures"] == 1
            assert await restarted.replicator.sync_origin("police") == 13
        finally:
            await restarted.close()


async def test_a_witness_that_moved_cosigns_our_current_checkpoint_at_once(
    tmp_path: Path,
) -> None:
    origin_store = await open_store(f"sqlite:///{tmp_path / 'origin.db'}")
    witness_store = await open_store(f"sqlite:///{tmp_path / 'witness.db'}")
    writer = LogWriter(
        origin_store,
        member_id="police",
        origin="police.example/hashfed",
        key=LOG_KEYS["police"],
        clock=lambda: NOW,
    )
    await writer.open()
    await writer.append([sub(n) for n in range(3)])
    holder: list[Manifest] = []
    runner, url = await serve_witness(
        Witness(witness_store, WITNESS_KEY, lambda: holder[0], lambda: NOW)
    )
    svc = service(
        origin_store,
        manifest({}, witness_quorum=1),  # the witness's old address: nothing listens
        [],
        self_id="police",
        origin="police.example/hashfed",
    )

    async def cosigned() -> bool:
        async with origin_store.read() as conn:
            note = (await reader.log_state(conn, "police.example/hashfed")).note
        return bool(checkpoint_cosignatures(SignedNote.parse(note), [WITNESS_KEY.public]))

    try:
        assert not await cosigned()
        holder.append(manifest({"witness": url}, witness_quorum=1, version=2))
        svc.set_manifest(holder[0])  # no append follows: the update alone gets it cosigned
        await wait_until(cosigned, within=10, what="our checkpoint cosigned")
    finally:
        await svc.close()
        await runner.cleanup()
        await origin_store.close()
        await witness_store.close()


# --- a whole node: authentication, policy and peers follow the accepted version ------------


async def test_running_node_authenticates_checks_and_pulls_by_the_new_version(
    tmp_path: Path,
) -> None:
    fed = make_federation(tmp_path, ("police", "hotline"))
    assert fed.steward is not None
    ctx = await open_context(load_config(fed.members["police"].config, env={}))
    old_key = fed.members["hotline"].transport_key
    new_key = SigningKey.generate("hotline-t2")
    pdq = {
        "submissions": [
            {
                "id": "p",
                "signal": {"kind": "pdq", "value": "cd" * 32, "quality": 60},
                "labels": {"categories": ["csam"], "severity": "high", "confirmed_by": "police"},
            }
        ]
    }
    cli = fed.members["police"].clients["cli"]
    server = TestServer(create_app(ctx))
    try:
        async with server, aiohttp.ClientSession() as session:

            def signed(key: SigningKey, keyid: str) -> SignedSession:
                return SignedSession(
                    session, key=key, keyid=keyid, destination="police", clock=time.time
                )

            path = str(server.make_url("/v1/manifests?after=0"))
            async with signed(old_key, "hotline-t1").request("GET", path) as r:
                assert r.status == 200  # hotline's first transport key, as a peer

            # v2: hotline rotates its transport key and moves; PDQ quality 70 is the minimum
            base = ctx.manifest.manifest
            members = tuple(
                m.model_copy(
                    update={
                        "endpoint": "http://hotline.moved.example",
                        "transport_keys": (
                            TransportKey(
                                key_id="hotline-t2",
                                public_key=base64.b64encode(new_key.public.raw).decode(),
                                not_before=0,
                            ),
                        ),
                    }
                )
                if m.id == "hotline"
                else m
                for m in base.members
            )
            submit = str(server.make_url("/v1/submissions"))
            async with signed(cli.key, cli.key_id).request("POST", submit, json=pdq) as r:
                assert r.status == 201  # quality 60 meets v1's minimum (50)
            v2 = base.model_copy(
                update={
                    "version": 2,
                    "issued_at": base.issued_at + 1,
                    "members": members,
                    "policy": base.policy.model_copy(update={"min_pdq_quality": 70}),
                }
            )
            assert await ctx.manifests.accept(sign_manifest(v2, [fed.steward]))

            async with signed(old_key, "hotline-t1").request("GET", path) as r:
                assert r.status == 401  # the rotated-out key is unknown at once
                assert (await r.json())["error"]["code"] == "unknown_key"
            async with signed(new_key, "hotline-t2").request("GET", path) as r:
                assert r.status == 200
            pdq["submissions"][0]["id"] = "q"
            async with signed(cli.key, cli.key_id).request("POST", submit, json=pdq) as r:
                assert r.status == 422
                assert (await r.json())["error"]["code"] == "pdq_quality_too_low"
            assert ctx.sync is not None
            assert ctx.sync.clients["hotline"].endpoint == "http://hotline.moved.example"
    finally:
        if ctx.sync is not None:
            await ctx.sync.close()
        await ctx.store.close()
