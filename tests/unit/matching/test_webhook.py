"""Alert webhook delivery: signed (RFC 9421, verified with the node's own verifier), retried
with exponential backoff while the receiver fails, delivered once it answers 2xx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select

from federation.core.keys import SigningKey
from federation.matching.webhook import AlertSender, WebhookSettings, retry_delay
from federation.server.auth import (
    ClientKey,
    ClientKeyRegistry,
    NonceCache,
    request_view,
    verify_request,
)
from federation.store import Store, open_store
from federation.store.schema import alerts, entries, local_content

KEY = SigningKey.from_seed("alerts", bytes(range(32)))
T0 = 1_700_000_000


def test_retry_delay_doubles_and_is_capped() -> None:
    assert [retry_delay(n, 2.0, 30.0) for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]


class Receiver:
    """A webhook that fails ``fail`` times, then verifies and keeps each alert."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.calls = 0
        self.received: list[dict[str, Any]] = []
        self.registry = ClientKeyRegistry(
            "platform", [ClientKey("alerts", KEY.public, frozenset())]
        )

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.calls <= self.fail:
            return web.Response(status=503)
        body = await request.read()
        principal = verify_request(
            request_view(request, body),
            resolver=self.registry,
            nonces=NonceCache(),
            destination="platform",
            now=T0,
        )
        assert principal.keyid == "alerts"
        self.received.append(json.loads(body))
        return web.Response(status=204)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(f"sqlite:///{tmp_path / 'node.db'}")
    async with s.transaction() as conn:
        await conn.execute(
            local_content.insert().values(
                id=1, ref="upload-7", signal_kind="md5", signal_value="ab" * 16, created=T0
            )
        )
        await conn.execute(
            entries.insert().values(
                origin="police.example/hashfed",
                idx=4,
                member_id="police",
                entry_id="e-4",
                kind="submission",
                created=T0,
                leaf=b"{}",
                leaf_hash=bytes(32),
                signal_kind="md5",
                signal_value="ab" * 16,
                labels=json.dumps({"categories": ["csam"]}),
            )
        )
        await conn.execute(
            alerts.insert().values(
                local_id=1, origin="police.example/hashfed", idx=4, distance=0, created=T0
            )
        )
    yield s
    await s.close()


async def test_failed_delivery_is_retried_with_backoff_then_delivered(store: Store) -> None:
    receiver = Receiver(fail=2)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    now = [float(T0)]
    settings = WebhookSettings(url=url, key=KEY, keyid="alerts", member_id="platform")
    sender = AlertSender(store, settings, lambda: now[0])
    try:
        await sender.deliver_due()  # attempt 1 fails: retry in 2 s
        await sender.deliver_due()  # not due yet: no call
        assert receiver.calls == 1
        now[0] += 2
        await sender.deliver_due()  # attempt 2 fails: retry in 4 s
        now[0] += 3
        await sender.deliver_due()
        assert receiver.calls == 2
        now[0] += 1
        await sender.deliver_due()  # attempt 3 succeeds
        assert receiver.calls == 3
        now[0] += 100
        await sender.deliver_due()  # delivered rows are never sent again
        assert receiver.calls == 3
    finally:
        await sender.close()
        await runner.cleanup()
    (alert,) = [r["alert"] for r in receiver.received]
    assert alert["ref"] == "upload-7"
    assert (alert["origin"], alert["index"], alert["distance"]) == ("police", 4, 0)
    assert alert["labels"] == {"categories": ["csam"]}
    async with store.read() as conn:
        row = (await conn.execute(select(alerts))).one()
    assert (row.attempts, row.delivered_at) == (3, T0 + 6)
