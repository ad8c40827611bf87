"""A tiny fake of a node's documented log routes, for PeerClient and Replicator unit tests.

Serves :class:`~tests.unit.sync.helpers.FakeLog` instances under ``/v1/log/...`` (its own) and
``/v1/logs/{member}/...`` (mirrors), records doorbells and the destination header of every
request, and lets a test tamper with what it serves.  It does not verify request signatures
(the server's auth middleware has its own tests); it does require the signature headers.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.unit.sync.helpers import FakeLog


@dataclass
class Tamper:
    """What to serve instead of the truth, per mirrored log."""

    note: str | None = None
    leaves: dict[int, bytes] = field(default_factory=dict)
    proof: list[bytes] | None = None
    status: int | None = None
    size: int | None = None
    """Serve the log as if it had only this many leaves (a lagging relay)."""


class FakeNode:
    """One node: its own member id and the logs it holds by member id."""

    def __init__(self, member_id: str, logs: dict[str, FakeLog]) -> None:
        self.member_id = member_id
        self.logs = logs
        self.tamper: dict[str, Tamper] = {}
        self.destinations: list[str] = []
        self.notified: list[dict[str, str]] = []
        self.checkpoint_requests: dict[str, int] = {}
        self.entry_requests: list[tuple[str, int, int]] = []
        """(member, start, limit) of every ``entries`` request, in order."""
        self.url = ""

    def _log(self, request: web.Request) -> tuple[FakeLog, Tamper, int]:
        if "Signature" not in request.headers or "Signature-Input" not in request.headers:
            raise web.HTTPUnauthorized
        self.destinations.append(request.headers.get("Hashfed-Destination", ""))
        member = request.match_info.get("member", self.member_id)
        if member not in self.logs:
            raise web.HTTPNotFound(
                text='{"error":{"code":"unknown_log","message":"no such log"}}',
                content_type="application/json",
            )
        tamper = self.tamper.get(member, Tamper())
        if tamper.status is not None:
            raise web.HTTPInternalServerError(
                text='{"error":{"code":"internal_error","message":"secret detail"}}',
                content_type="application/json",
            )
        fake = self.logs[member]
        return fake, tamper, fake.size if tamper.size is None else tamper.size

    async def checkpoint(self, request: web.Request) -> web.Response:
        fake, tamper, size = self._log(request)
        member = request.match_info.get("member", self.member_id)
        self.checkpoint_requests[member] = self.checkpoint_requests.get(member, 0) + 1
        return web.Response(text=tamper.note or fake.note(size), content_type="text/plain")

    async def entries(self, request: web.Request) -> web.Response:
        fake, tamper, size = self._log(request)
        start, limit = int(request.query["start"]), int(request.query["limit"])
        member = request.match_info.get("member", self.member_id)
        self.entry_requests.append((member, start, limit))
        items = [
            {"index": i, "leaf": base64.b64encode(tamper.leaves.get(i, fake.leaves[i])).decode()}
            for i in range(start, min(start + min(limit, 1000), size))
        ]
        return web.json_response({"entries": items, "size": size})

    async def consistency(self, request: web.Request) -> web.Response:
        fake, tamper, _ = self._log(request)
        m, n = int(request.query["from"]), int(request.query["to"])
        proof = tamper.proof if tamper.proof is not None else fake.proof(m, n)
        return web.json_response({"proof": [base64.b64encode(p).decode() for p in proof]})

    async def notify(self, request: web.Request) -> web.Response:
        self.destinations.append(request.headers.get("Hashfed-Destination", ""))
        self.notified.append(await request.json())
        return web.json_response({"ok": True}, status=202)

    def app(self) -> web.Application:
        app = web.Application()
        for prefix in ("/v1/log", "/v1/logs/{member}"):
            app.router.add_get(f"{prefix}/checkpoint", self.checkpoint)
            app.router.add_get(f"{prefix}/entries", self.entries)
            app.router.add_get(f"{prefix}/proof/consistency", self.consistency)
        app.router.add_post("/v1/notify", self.notify)
        return app


@asynccontextmanager
async def serving(*nodes: FakeNode) -> AsyncIterator[None]:
    """Run each node on a loopback port and set its ``url``."""
    servers = [TestServer(node.app()) for node in nodes]
    try:
        for node, server in zip(nodes, servers, strict=True):
            await server.start_server()
            node.url = str(server.make_url("/"))
        yield
    finally:
        for server in servers:
            await server.close()
