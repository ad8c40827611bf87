"""Ringing peers' doorbells after our own log grows (spec/sync.md §6, the push half).

After an append the node tells every peer its new checkpoint so they pull at once instead of
waiting for their next poll.  Ringing never blocks the request that appended and never fails
it: delivery runs in background tasks, at most one in flight per peer, and a burst of appends
coalesces — while a notify to a peer is in flight only the *latest* checkpoint is remembered
for it, and sent next.  A checkpoint is cumulative, so skipping intermediate ones loses nothing.
Failures are logged and dropped: the peer's poll is the safety net, pull stays authoritative.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

import structlog

from federation.errors import FederationError
from federation.sync.client import PeerClient

log = structlog.get_logger(__name__)


class Doorbell:
    """Coalescing fire-and-forget ``POST /v1/notify`` to every peer (see module docstring)."""

    def __init__(self, clients: Mapping[str, PeerClient]) -> None:
        self._clients = dict(clients)
        self._latest: dict[str, tuple[str, str]] = {}  # peer -> (origin member id, note)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closed = False
        self.sent = 0
        """Notifies delivered (for ``/metrics``)."""
        self.failed = 0
        """Notifies that failed (logged, not retried: the peer's poll catches up)."""

    def add_peer(self, peer_id: str, client: PeerClient) -> None:
        """Ring ``peer_id`` too from now on (a manifest update added it)."""
        self._clients[peer_id] = client

    def remove_peer(self, peer_id: str) -> None:
        """Stop ringing ``peer_id`` (a manifest update dropped it); a notify already in
        flight to it ends on its own, nothing newer follows."""
        self._clients.pop(peer_id, None)
        self._latest.pop(peer_id, None)

    def ring(self, origin: str, note: str) -> None:
        """Tell every peer that ``origin``'s log has checkpoint ``note`` (returns at once)."""
        if self._closed:
            return
        for peer in self._clients:
            self._latest[peer] = (origin, note)
            if peer not in self._tasks:
                self._tasks[peer] = asyncio.create_task(self._deliver(peer), name=f"notify-{peer}")

    async def _deliver(self, peer: str) -> None:
        try:
            while (pending := self._latest.pop(peer, None)) is not None:
                client = self._clients.get(peer)
                if client is None:
                    return  # removed since it was rung
                origin, note = pending
                try:
                    await client.notify(origin, note)
                    self.sent += 1
                except FederationError as exc:
                    self.failed += 1
                    log.warning("notify_failed", peer=peer, origin=origin, code=exc.code)
        finally:
            self._tasks.pop(peer, None)

    async def close(self) -> None:
        """Stop ringing and cancel deliveries in flight (shutdown)."""
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
