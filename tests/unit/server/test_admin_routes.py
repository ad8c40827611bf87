"""Admin routes in-process: unfreeze (route and ``hashfed admin unfreeze``), manifest push and
chain, the resolver following the manifest in force, and the witness route on a non-witness."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from federation.cli.main import main
from federation.client.signer import SignedSession
from federation.config import load_config
from federation.core.manifest import parse_signed_manifest, sign_manifest, signed_manifest_json
from federation.keyfile import save_private_key
from federation.node import open_context
from federation.server.app import create_app
from federation.server.context import NodeContext
from federation.store.schema import evidence, logs
from tests.integration.harness import Federation, make_federation

POLICE_ORIGIN = "police.example/hashfed"


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return make_federation(tmp_path, ["police", "platform"])


@pytest.fixture
async def ctx(fed: Federation) -> AsyncIterator[NodeContext]:
    context = await open_context(load_config(fed.members["platform"].config, env={}))
    yield context
    await context.store.close()


@pytest.fixture
async def server(ctx: NodeContext) -> AsyncIterator[TestServer]:
    srv = TestServer(create_app(ctx))
    async with srv:
        yield srv


async def call(
    server: TestServer, fed: Federation, method: str, path: str, body: Any = None, who: str = "cli"
) -> tuple[int, Any]:
    spec = fed.members["platform"].clients[who]
    async with aiohttp.ClientSession() as session:
        signed = SignedSession(
            session, key=spec.key, keyid=spec.key_id, destination="platform", clock=time.time
        )
        async with signed.request(method, server.make_url(path), json=body) as r:
            return r.status, await r.json()


async def freeze_police(ctx: NodeContext) -> None:
    async with ctx.store.transaction() as conn:
        await conn.execute(
            logs.insert().values(
                origin=POLICE_ORIGIN,
                member_id="police",
                size=0,
                root=bytes(32),
                checkpoint="x",
                updated_at=0,
                frozen=True,
                frozen_reason="inconsistent_checkpoint: test",
            )
        )
        await conn.execute(
            evidence.insert().values(
                origin=POLICE_ORIGIN, note_a="a", note_b="b", reason="r", detected_at=0
            )
        )


async def test_unfreeze_route_keeps_evidence_and_checks_role(
    server: TestServer, fed: Federation, ctx: NodeContext
) -> None:
    await freeze_police(ctx)
    status, body = await call(
        server, fed, "POST", "/v1/admin/unfreeze", {"origin": "police"}, "reader"
    )
    assert (status, body["error"]["code"]) == (403, "missing_role")
    status, body = await call(server, fed, "POST", "/v1/admin/unfreeze", {"origin": "police"})
    assert (status, body) == (
        200,
        {"origin": "police", "unfrozen": True, "reason": "inconsistent_checkpoint: test"},
    )
    async with ctx.store.read() as conn:
        where = logs.c.origin == POLICE_ORIGIN
        assert (await conn.execute(select(logs.c.frozen).where(where))).scalar_one() is False
        assert len((await conn.execute(select(evidence))).all()) == 1
    status, body = await call(server, fed, "POST", "/v1/admin/unfreeze", {"origin": "police"})
    assert (status, body["error"]["code"]) == (400, "not_frozen")
    status, body = await call(server, fed, "POST", "/v1/admin/unfreeze", {"origin": "platform"})
    assert (status, body["error"]["code"]) == (404, "unknown_log")
    status, body = await call(server, fed, "POST", "/v1/admin/unfreeze", {"origin": 7})
    assert (status, body["error"]["field"]) == (400, "origin")


async def test_cli_admin_unfreeze(server: TestServer, fed: Federation, ctx: NodeContext) -> None:
    await freeze_police(ctx)
    spec = fed.members["platform"].clients["cli"]
    key_file = fed.root / "platform" / "keys" / "cli.key"
    save_private_key(key_file, spec.key)
    argv = [
        "admin", "unfreeze", "police", "--json", "--node", str(server.make_url("")).rstrip("/"),
        "--key", str(key_file), "--key-id", spec.key_id, "--member", "platform",
    ]  # fmt: skip
    assert await asyncio.to_thread(main, argv) == 0
    assert await asyncio.to_thread(main, argv) == 2  # not frozen any more: refused input


async def test_manifest_push_follows_the_chain_and_the_resolver_follows_it(
    server: TestServer, fed: Federation, ctx: NodeContext
) -> None:
    assert fed.steward is not None
    v1 = parse_signed_manifest(fed.manifest.read_bytes())
    status, body = await call(server, fed, "GET", "/v1/manifests?after=0")
    assert (status, [m["manifest"]["version"] for m in body["manifests"]]) == (200, [1])
    members = tuple(
        m.model_copy(update={"status": "suspended", "suspended_at": int(time.time()) - 10})
        if m.id == "police"
        else m
        for m in v1.manifest.members
    )
    v2 = sign_manifest(
        v1.manifest.model_copy(update={"version": 2, "members": members}), [fed.steward]
    )
    status, body = await call(server, fed, "POST", "/v1/manifest", signed_manifest_json(v2))
    assert (status, body) == (200, {"version": 2, "outcome": "accepted"})
    assert ctx.manifest.manifest.version == 2
    police_key = v2.manifest.members[0].transport_keys[0].key_id
    principal = ctx.resolver.resolve(police_key, int(time.time()))
    assert principal is not None
    assert principal.suspended  # requests by police now get 403
    status, body = await call(server, fed, "GET", "/v1/manifests?after=1")
    assert [m["manifest"]["version"] for m in body["manifests"]] == [2]
    status, body = await call(server, fed, "POST", "/v1/manifest", {"manifest": {}})
    assert (status, body["error"]["code"]) == (400, "invalid_manifest")


async def test_witness_route_on_a_node_that_is_no_witness(
    server: TestServer, fed: Federation
) -> None:
    spec = fed.members["platform"].clients["cli"]
    async with aiohttp.ClientSession() as session:
        signed = SignedSession(
            session, key=spec.key, keyid=spec.key_id, destination="platform", clock=time.time
        )
        url = server.make_url("/v1/witness/add-checkpoint")
        async with signed.request("POST", url, body=b"old 0\n\nx") as r:
            assert (r.status, (await r.json())["error"]["code"]) == (404, "not_a_witness")
