"""A member's requests are judged against its suspension by the clock of each request
(spec/protocol.md §3.3): active before a future ``suspended_at``, refused from it on, and refused
at once when suspended by ``suspended_size`` alone — on the running node, not at start-up."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from federation.client.signer import SignedSession
from federation.config import load_config
from federation.core.keys import SigningKey
from federation.core.manifest import parse_signed_manifest, sign_manifest, signed_manifest_json
from federation.node import open_context
from federation.server.app import create_app
from federation.server.auth import PeerKey, PeerKeyRegistry
from federation.server.context import build_resolver
from tests.integration.harness import Federation, make_federation

T = 1_900_000_000
"""The node's clock at the start of each test (after every key's ``not_before``)."""


class Clock:
    def __init__(self) -> None:
        self.now = float(T)

    def __call__(self) -> float:
        return self.now


def suspend_police(fed: Federation, **suspension: Any) -> None:
    """Rewrite the genesis manifest with ``police`` suspended as given (re-signed)."""
    assert fed.steward is not None
    signed = parse_signed_manifest(fed.manifest.read_bytes())
    members = tuple(
        m.model_copy(update={"status": "suspended", **suspension}) if m.id == "police" else m
        for m in signed.manifest.members
    )
    again = sign_manifest(signed.manifest.model_copy(update={"members": members}), [fed.steward])
    fed.manifest.write_text(json.dumps(signed_manifest_json(again)))


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return make_federation(tmp_path, ["police", "platform"])


def police_key(fed: Federation) -> str:
    signed = parse_signed_manifest(fed.manifest.read_bytes())
    police = signed.manifest.member("police")
    assert police is not None
    return police.transport_keys[0].key_id


def test_registry_judges_suspended_at_by_the_time_asked() -> None:
    pub = SigningKey.from_seed("k", b"\x07" * 32).public
    registry = PeerKeyRegistry(
        [
            PeerKey("later", pub, "m", 0, None, suspended=True, suspended_at=T + 100),
            PeerKey("at-once", pub, "n", 0, None, suspended=True),
            PeerKey("active", pub, "o", 0, None),
        ]
    )

    def suspended(keyid: str) -> list[bool]:
        found = [registry.resolve(keyid, at) for at in (T, T + 99, T + 100, T + 10_000)]
        return [p is not None and p.suspended for p in found]

    assert suspended("later") == [False, False, True, True]
    assert suspended("at-once") == [True, True, True, True]
    assert suspended("active") == [False, False, False, False]


@pytest.mark.parametrize(
    ("suspension", "refused_at"),
    [
        ({"suspended_at": T + 100}, [False, False, True]),
        ({"suspended_size": 3}, [True, True, True]),
        ({"suspended_at": T + 100, "suspended_size": 3}, [False, False, True]),
        ({"suspended_at": T - 1}, [True, True, True]),
    ],
)
def test_build_resolver_carries_suspended_at(
    fed: Federation, suspension: dict[str, int], refused_at: list[bool]
) -> None:
    suspend_police(fed, **suspension)
    config = load_config(fed.members["platform"].config, env={})
    resolver = build_resolver(config, parse_signed_manifest(fed.manifest.read_bytes()))
    got = []
    for at in (T, T + 99, T + 100):
        principal = resolver.resolve(police_key(fed), at)
        assert principal is not None
        got.append(principal.suspended)
    assert got == refused_at


@pytest.fixture
async def served(fed: Federation) -> AsyncIterator[tuple[TestServer, Clock]]:
    suspend_police(fed, suspended_at=T + 100)
    clock = Clock()
    ctx = await open_context(load_config(fed.members["platform"].config, env={}), clock=clock)
    try:
        async with TestServer(create_app(ctx)) as server:
            yield server, clock
    finally:
        await ctx.store.close()


async def as_police(fed: Federation, server: TestServer, clock: Clock) -> tuple[int, Any]:
    """A signed ``GET /v1/manifests`` by police's node, at the node's current time."""
    spec = fed.members["police"]
    async with aiohttp.ClientSession() as session:
        signed = SignedSession(
            session,
            key=spec.transport_key,
            keyid=police_key(fed),
            destination="platform",
            clock=clock,
        )
        async with signed.request("GET", server.make_url("/v1/manifests?after=0")) as r:
            return r.status, await r.json()


async def test_running_node_refuses_from_suspended_at_on(
    fed: Federation, served: tuple[TestServer, Clock]
) -> None:
    server, clock = served
    status, body = await as_police(fed, server, clock)
    assert status == 200, body  # suspended from T + 100, active now
    clock.now = T + 99
    assert (await as_police(fed, server, clock))[0] == 200
    clock.now = T + 100  # the same process, the same resolver: only the clock moved
    status, body = await as_police(fed, server, clock)
    assert (status, body["error"]["code"]) == (403, "member_suspended")
