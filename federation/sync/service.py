"""Replication as one node service: peer clients, the replicator and the doorbell together.

The node builds one :class:`SyncService` from its config and manifest (building opens nothing)
and hands it to the server; :meth:`SyncService.start` and :meth:`SyncService.close` run in the
app's ``cleanup_ctx``.  The server's routes use the small surface here — the doorbell handler,
evidence listing, status, and :meth:`SyncService.own_appended` after each append — and never
reach into the replicator.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, Final

import aiohttp
import structlog

from federation.config import SyncSection
from federation.core.keys import SigningKey
from federation.core.manifest import Manifest, Member
from federation.log import mirror, reader
from federation.store import Store
from federation.sync.client import PeerClient
from federation.sync.cosign import Cosigner
from federation.sync.doorbell import Doorbell
from federation.sync.notify import handle_notify
from federation.sync.pull import AppliedItem
from federation.sync.replicator import Replicator

log = structlog.get_logger(__name__)
STOP_GRACE: Final = 5.0
"""Seconds a shutdown waits for pulls in flight before cancelling them."""


class SyncService:
    """Everything replication needs while the node runs (see module docstring)."""

    def __init__(
        self,
        *,
        store: Store,
        manifest: Manifest,
        self_id: str,
        transport_key: SigningKey,
        keyid: str,
        clock: Callable[[], float],
        settings: SyncSection,
        on_applied: Callable[[list[AppliedItem]], object],
        origin: str | None = None,
    ) -> None:
        timeout = aiohttp.ClientTimeout(
            total=settings.request_timeout,
            connect=settings.connect_timeout,
            sock_read=settings.request_timeout,
        )
        self.self_id = self_id
        self.enabled = settings.enabled
        self.clients = {
            m.id: PeerClient(m, key=transport_key, keyid=keyid, clock=clock, timeout=timeout)
            for m in manifest.members
            if m.id != self_id
        }
        self.replicator = Replicator(
            store,
            manifest,
            self_id,
            self.clients,
            clock,
            on_applied,
            poll_interval=settings.poll_interval,
            page_size=settings.page_size,
            max_sync_leaves=settings.chunk_size,
        )
        self.doorbell = Doorbell(self.clients)
        self._store = store
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()  # small jobs of manifest updates
        self._key, self._keyid, self._clock, self._timeout = transport_key, keyid, clock, timeout
        self.origin = origin
        self.cosigner = (
            None
            if origin is None
            else Cosigner(
                store=store,
                manifest=lambda: self.replicator.manifest,
                self_id=self_id,
                origin=origin,
                transport_key=transport_key,
                keyid=keyid,
                clock=clock,
                timeout=timeout,
                on_cosigned=self._ring,
            )
        )

    async def start(self) -> None:
        """Load stored sync state and start pulling in the background (if enabled)."""
        await self.replicator.load()
        if self.enabled:
            self._task = asyncio.create_task(self.replicator.run(), name="replicator")
            log.info("replication_started", peers=sorted(self.clients))
            if self.cosigner is not None and self.origin is not None and self.cosigner.wanted():
                async with self._store.read() as conn:
                    state = await reader.log_state(conn, self.origin)
                self.cosigner.submit(state.note)  # a restart may have cut gathering short

    async def close(self) -> None:
        """Stop pulling (pulls in flight get :data:`STOP_GRACE`), stop ringing, close clients."""
        self.replicator.stop()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_GRACE)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self.doorbell.close()
        if self.cosigner is not None:
            await self.cosigner.close()
        for client in self.clients.values():
            await client.close()

    def own_appended(self, note: str) -> None:
        """Our own log has the new checkpoint ``note``: have it witnessed and ring every peer
        (fire and forget).  When policy needs cosignatures, peers are rung only with the
        cosigned note: the bare one could not be applied anyway."""
        if not self.enabled:
            return
        if self.cosigner is not None and self.cosigner.wanted():
            self.cosigner.submit(note)
            if self.replicator.manifest.policy.witness_quorum > 0:
                return
        self.doorbell.ring(self.self_id, note)

    def _ring(self, note: str) -> None:
        if self.enabled:
            self.doorbell.ring(self.self_id, note)

    def unfrozen(self, member_id: str) -> None:
        """An operator lifted the freeze on ``member_id``'s log: pull it again at once."""
        self.replicator.poke(member_id)

    def set_manifest(self, manifest: Manifest) -> None:
        """A new manifest is in force: verify, pull, ring and cosign by it from now on.

        All in one step, with no await (spec/sync.md §10): pulls verify against the new
        version; a member it adds becomes a peer; a member it drops stops being one (its
        client is retired); a member whose ``endpoint`` changed is asked at its new address,
        its backoff from the old one cleared.  A pull in flight keeps the clients and the
        manifest it started with and finishes; every origin is then pulled again at once, by
        the new values.  A member the new version suspends stays a peer (it may relay other
        logs), but its own new entries fail verification (spec §3 step 6).
        """
        old = self.replicator.manifest
        self.replicator.manifest = manifest
        members = {m.id: m for m in manifest.members if m.id != self.self_id}
        for peer_id in sorted(self.clients.keys() - members.keys()):
            client = self.clients.pop(peer_id)
            self.doorbell.remove_peer(peer_id)
            self.replicator.remove_peer(peer_id)
            client.retire()
            log.info("peer_removed", peer=peer_id, version=manifest.version)
        for member in members.values():
            known = self.clients.get(member.id)
            if known is None:
                client = PeerClient(
                    member,
                    key=self._key,
                    keyid=self._keyid,
                    clock=self._clock,
                    timeout=self._timeout,
                )
                self.clients[member.id] = client
                self.doorbell.add_peer(member.id, client)
                self.replicator.add_peer(member.id, client)
                log.info("peer_added", peer=member.id, version=manifest.version)
            elif known.repoint(member.endpoint):
                if self.replicator.peer_moved(member.id):
                    self._background(self.replicator.save_peer(member.id), "save-peer")
                log.info(
                    "peer_moved", peer=member.id, endpoint=member.endpoint, version=manifest.version
                )
        for origin in self.replicator.origins():
            self.replicator.poke(origin)
        if self.cosigner is not None:
            self.cosigner.retry_now()
            if self.enabled and _witnessing(old, self.self_id) != _witnessing(
                manifest, self.self_id
            ):
                # New or moved witnesses, or a new quorum: have our current checkpoint
                # cosigned now, not at our next append (peers may wait for it).
                self._background(self._cosign_current(), "cosign-current")

    def _background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` (a short job of a manifest update) in the background; :meth:`close`
        waits for it.  A failure is logged: the next pull or append does the same again."""

        async def guarded() -> None:
            try:
                await work
            except Exception:
                log.exception("manifest_job_failed", job=name)

        task = asyncio.create_task(guarded(), name=name)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _cosign_current(self) -> None:
        if self.cosigner is None or self.origin is None or not self.cosigner.wanted():
            return
        async with self._store.read() as conn:
            state = await reader.log_state(conn, self.origin)
        if state.size:
            self.cosigner.submit(state.note)

    async def notify(self, sender: str, body: bytes) -> dict[str, Any]:
        """Handle a doorbell from authenticated peer ``sender`` (the JSON of the 202)."""
        return await handle_notify(self.replicator, sender, body)

    def status(self) -> dict[str, Any]:
        """Per-origin and per-peer replication state for ``/v1/status``."""
        return {"enabled": self.enabled, **self.replicator.status()}

    async def evidence(self, limit: int) -> list[dict[str, object]]:
        """Stored evidence (split views, duplicate entry ids), newest first."""
        async with self._store.read() as conn:
            return await mirror.list_evidence(conn, limit)

    async def evidence_count(self) -> int:
        """Number of evidence records (for ``/metrics``)."""
        async with self._store.read() as conn:
            return await mirror.count_evidence(conn)


def _witnessing(manifest: Manifest, self_id: str) -> tuple[int, tuple[Member, ...]]:
    """What decides who cosigns our checkpoints: the quorum and the witnesses (as members:
    their endpoints and keys), as far as a manifest can change them."""
    listed = tuple(m for m in manifest.members if m.id != self_id and m.witness_vkey is not None)
    return manifest.policy.witness_quorum, listed
