"""Fixtures for replication tests: a police origin and a relay served over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from federation.log import reader
from federation.store import Store, open_store
from federation.store.schema import evidence, peers
from federation.sync.client import PeerClient
from federation.sync.replicator import AppliedItem, Replicator
from tests.unit.sync.fakenode import FakeNode, serving
from tests.unit.sync.helpers import HTTP_KEYS, T0, FakeLog, make_manifest

ORIGIN = "police.example/hashfed"
NOW = T0 + 10_000


@dataclass
class World:
    log: FakeLog
    police: FakeNode
    relay: FakeNode
    store: Store
    rep: Replicator
    applied: list[AppliedItem]
    changed: asyncio.Event

    async def wait_applied(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.applied) < count:
                self.changed.clear()
                await self.changed.wait()

    async def size(self) -> int:
        async with self.store.read() as conn:
            try:
                return (await reader.log_state(conn, ORIGIN)).size
            except Exception:
                return 0

    async def peer_row(self, peer: str) -> tuple[int, str | None]:
        async with self.store.read() as conn:
            row = (await conn.execute(select(peers).where(peers.c.member_id == peer))).one()
        return int(row.failures), row.last_error

    async def evidence_count(self) -> int:
        async with self.store.read() as conn:
            return len((await conn.execute(select(evidence))).all())


@pytest.fixture
async def world(db_url: str) -> AsyncIterator[World]:
    log = FakeLog()
    log.add(13)
    police = FakeNode("police", {"police": log})
    relay = FakeNode("relay", {"police": log, "relay": FakeLog("relay")})
    store = await open_store(db_url)
    async with serving(police, relay):
        manifest = make_manifest(endpoints={"police": police.url, "relay": relay.url})
        clients = {
            m: PeerClient(
                manifest.member(m),  # type: ignore[arg-type]
                key=HTTP_KEYS["self"],
                keyid="self-http",
                clock=lambda: NOW,
            )
            for m in ("police", "relay")
        }
        applied: list[AppliedItem] = []
        changed = asyncio.Event()

        def on_applied(items: list[AppliedItem]) -> None:
            applied.extend(items)
            changed.set()

        rep = Replicator(store, manifest, "self", clients, lambda: NOW, on_applied, page_size=4)
        await rep.load()
        try:
            yield World(log, police, relay, store, rep, applied, changed)
        finally:
            for client in clients.values():
                await client.close()
            await store.close()
