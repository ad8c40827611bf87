"""Retroactive alerts reach the platform's webhook: a platform registers content it hosts,
police submits a matching hash, the platform's node POSTs a signed alert (verified here with
the RFC 9421 verifier and the webhook key's public half); a webhook that is down at first gets
the alert after a retry, also across a restart of the node."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from federation.core.keys import SigningKey
from federation.keyfile import save_private_key
from federation.server.auth import (
    ClientKey,
    ClientKeyRegistry,
    NonceCache,
    request_view,
    verify_request,
)
from tests.integration.harness import Node, free_ports, make_federation, wait_until
from tests.integration.test_federation import post, start_all, stop_all, submit

ROLES: dict[str, tuple[str, ...]] = {"police": ("submitter", "consumer"), "platform": ("consumer",)}


class Webhook:
    """The platform's alert receiver: answers 503 while ``down``, else verifies and keeps."""

    def __init__(self, key: SigningKey) -> None:
        self.down = False
        self.refused = 0
        self.alerts: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._registry = ClientKeyRegistry(
            "platform", [ClientKey("alerts", key.public, frozenset())]
        )
        self._nonces = NonceCache()

    async def handle(self, request: web.Request) -> web.Response:
        if self.down:
            self.refused += 1
            return web.Response(status=503)
        body = await request.read()
        try:
            verify_request(
                request_view(request, body),
                resolver=self._registry,
                nonces=self._nonces,
                destination="platform",
                now=int(time.time()),
            )
        except Exception as exc:  # noqa: BLE001 - recorded and asserted on
            self.errors.append(repr(exc))
            return web.Response(status=401)
        self.alerts.append(json.loads(body))
        return web.Response(status=204)


@asynccontextmanager
async def running(hook: Webhook, port: int) -> AsyncIterator[None]:
    app = web.Application()
    app.router.add_post("/alerts", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


def federation(tmp_path: Path, port: int) -> tuple[Any, SigningKey]:
    key = SigningKey.generate("alerts")
    alerts = [
        "[alerts]",
        f'webhook_url = "http://127.0.0.1:{port}/alerts"',
        'webhook_key = "keys/alerts.key"',
        'webhook_key_id = "alerts"',
        "retry_base = 0.5",
        "retry_max = 1.0",
        "poll_interval = 0.5",
    ]
    fed = make_federation(
        tmp_path,
        ["police", "platform"],
        loopback=True,
        roles=ROLES,
        extra_config={"platform": alerts},
    )
    save_private_key(fed.members["platform"].config.parent / "keys" / "alerts.key", key)
    return fed, key


async def register(platform: Node, n: int) -> None:
    item = {"ref": f"upload-{n}", "signal": {"kind": "md5", "value": f"{n:032x}"}}
    status, body = await post(platform, "/v1/local-content", {"items": [item]})
    assert status == 201, body


@pytest.mark.slow
async def test_alert_is_signed_and_delivered_after_the_webhook_recovers(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    fed, key = federation(tmp_path, port)
    hook = Webhook(key)
    police, platform = Node(fed.members["police"]), Node(fed.members["platform"])
    async with running(hook, port):
        await start_all(police, platform)
        try:
            await register(platform, 7)
            await submit(police, 7, 1)  # md5 of n=7: what the platform hosts

            async def got(n: int) -> bool:
                return len(hook.alerts) >= n

            await wait_until(lambda: got(1), what="the alert at the webhook")
            assert hook.errors == []
            alert = hook.alerts[0]["alert"]
            assert (alert["ref"], alert["origin"], alert["index"], alert["distance"]) == (
                "upload-7",
                "police",
                0,
                0,
            )
            assert hook.alerts[0]["member"] == "platform"

            hook.down = True
            await register(platform, 8)
            await submit(police, 8, 1)

            async def refused() -> bool:
                return hook.refused >= 1

            await wait_until(refused, what="a failed delivery")
            stop_all(platform)  # the pending alert survives a restart
            hook.down = False
            await start_all(platform)
            await wait_until(lambda: got(2), what="the alert after the retry")
            assert hook.errors == []
            assert hook.alerts[1]["alert"]["ref"] == "upload-8"
            assert len({a["alert"]["id"] for a in hook.alerts}) == 2
        finally:
            stop_all(police, platform)
