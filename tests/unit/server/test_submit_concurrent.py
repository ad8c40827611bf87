"""Concurrent writes over HTTP (the app in-process, SQLite): the log writer may commit them
together, yet every request gets its own answer — 201 with receipts that verify offline
against whatever checkpoint covered them, or its own error — and the log holds exactly the
accepted entries, once each."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from federation.client.signer import SignedSession
from federation.config import load_config
from federation.core.checkpoint import open_checkpoint
from federation.core.receipt import verify_receipt
from federation.node import open_context
from federation.server.app import create_app
from federation.server.context import MatchItem, NodeContext
from federation.store import Store
from tests.integration.harness import Federation, make_federation

LABELS = {"categories": ["csam"], "severity": "high", "confirmed_by": "police"}
CLIENTS = 8


class RecordingMatcher:
    """Collects what the node hands the match service (the real one is tested elsewhere)."""

    ready = True

    def __init__(self) -> None:
        self.items: list[MatchItem] = []

    async def load(self, store: Store) -> None:
        return None

    async def on_entries(self, items: Sequence[MatchItem]) -> None:
        self.items.extend(items)

    def stats(self) -> Mapping[str, int]:
        return {}


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return make_federation(tmp_path, max_batch=10)


@pytest.fixture
async def ctx(fed: Federation) -> AsyncIterator[NodeContext]:
    context = await open_context(load_config(fed.members["police"].config, env={}))
    yield dataclasses.replace(context, matcher=RecordingMatcher())
    await context.store.close()


@pytest.fixture
async def server(ctx: NodeContext) -> AsyncIterator[TestServer]:
    srv = TestServer(create_app(ctx))
    async with srv:
        yield srv


def item(n: int, entry_id: str | None = None) -> dict[str, Any]:
    return {
        "id": entry_id or f"c-{n}",
        "signal": {"kind": "md5", "value": f"{n:032x}"},
        "labels": LABELS,
    }


async def post(
    server: TestServer, fed: Federation, path: str, body: object
) -> tuple[int, dict[str, Any]]:
    spec = fed.members["police"].clients["cli"]
    async with aiohttp.ClientSession() as session:
        signed = SignedSession(
            session, key=spec.key, keyid=spec.key_id, destination="police", clock=time.time
        )
        async with signed.request("POST", str(server.make_url(path)), json=body) as r:
            return r.status, await r.json()


async def test_concurrent_submissions_each_get_receipts_or_their_own_error(
    server: TestServer, fed: Federation, ctx: NodeContext
) -> None:
    status, first = await post(server, fed, "/v1/submissions", {"submissions": [item(0)]})
    assert status == 201
    missing = {"origin": "police", "index": 99, "leaf_hash": "00" * 32}
    requests = [
        ("/v1/submissions", {"submissions": [item(2 * c + 1), item(2 * c + 2)]})
        for c in range(CLIENTS)
    ]
    requests.insert(3, ("/v1/submissions", {"submissions": [item(7, entry_id="c-0")]}))
    requests.insert(6, ("/v1/retractions", {"retractions": [
        {"id": "r", "target": missing, "reason": "error"}
    ]}))  # fmt: skip
    requests.append(("/v1/submissions", {"submissions": [item(0)]}))  # a retry of the first
    answers = await asyncio.gather(*(post(server, fed, path, body) for path, body in requests))

    statuses = [status for status, _ in answers]
    assert statuses.count(201) == CLIENTS + 1
    conflict, not_found = answers[3], answers[6]
    assert conflict[0] == 409
    assert (conflict[1]["error"]["code"], conflict[1]["error"]["field"]) == (
        "id_conflict",
        "submissions.0.id",
    )
    assert not_found[0] == 404
    assert (not_found[1]["error"]["code"], not_found[1]["error"]["field"]) == (
        "target_not_found",
        "retractions.0.target",
    )

    key = fed.members["police"].log_key.public
    fresh: list[int] = []
    for status, body in answers:
        if status != 201:
            continue
        for receipt in body["receipts"]:
            verified = verify_receipt(receipt["receipt"], key)
            assert verified.index == receipt["index"]
            assert open_checkpoint(receipt["checkpoint"], key) == verified.checkpoint
            assert verified.entry.model_dump(mode="json", exclude_none=True) == receipt["entry"]
            if receipt["existing"]:
                assert receipt["index"] == first["receipts"][0]["index"]
            else:
                fresh.append(receipt["index"])
    # every accepted entry once, at indexes 1..16 with no gap: the refused took none
    assert sorted(fresh) == list(range(1, 2 * CLIENTS + 1))
    matcher = ctx.matcher
    assert isinstance(matcher, RecordingMatcher)
    assert sorted(i for _, i, _ in matcher.items) == list(range(2 * CLIENTS + 1))
    async with (
        aiohttp.ClientSession() as session,
        session.get(str(server.make_url("/v1/log/checkpoint"))) as r,
    ):
        assert open_checkpoint(await r.text(), key).size == 2 * CLIENTS + 1
