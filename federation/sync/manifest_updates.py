"""Membership manifest updates: which signed manifest is in force, and how new ones spread.

Trust is a chain (spec/entries.md §6): the operator pins a genesis manifest (the file), and a
newer version is accepted only through :func:`~federation.core.manifest.accept_update` — a
quorum of the stewards of the version in force signed it.  :class:`ManifestKeeper` holds the
manifest in force, stores every accepted version in the ``manifests`` table and tells
listeners (replication, request authentication) when it changes.  At start it replays the
stored chain from the file's manifest, re-verifying every link, so a restart uses the newest
accepted version and a tampered row is skipped rather than trusted.

New versions arrive by ``POST /v1/manifest`` (an admin client, or a peer passing one on) and
by polling: every ``[sync] manifest_poll_interval`` seconds the node asks each peer for its
``GET /v1/manifest``; a higher version is fetched with the versions between
(``GET /v1/manifests?after=``) and accepted link by link.  A node that accepts a version
pushes it to every peer at once (fire and forget), so an update spreads in one round trip per
hop and the poll is only the safety net (spec/sync.md §10).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import structlog
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from federation.core.canonical import canonical_json
from federation.core.manifest import (
    Manifest,
    SignedManifest,
    accept_update,
    parse_signed_manifest,
    signed_manifest_json,
)
from federation.errors import FederationError, VerificationError
from federation.store import Store
from federation.store.schema import manifests
from federation.sync.client import PeerClient, PeerHTTPError

log = structlog.get_logger(__name__)

MAX_CHAIN: Final = 100
"""Most versions one ``GET /v1/manifests?after=`` answer carries."""


def _document(signed: SignedManifest) -> str:
    return canonical_json(signed_manifest_json(signed)).decode()


class ManifestKeeper:
    """The signed manifest in force and its stored history (see module docstring)."""

    def __init__(self, genesis: SignedManifest, clock: Callable[[], float]) -> None:
        self._current = genesis
        self._clock = clock
        self._store: Store | None = None
        self._lock = asyncio.Lock()
        self._listeners: list[Callable[[SignedManifest], None]] = []

    @property
    def current(self) -> SignedManifest:
        """The signed manifest in force."""
        return self._current

    @property
    def manifest(self) -> Manifest:
        """The manifest in force (without signatures)."""
        return self._current.manifest

    def subscribe(self, listener: Callable[[SignedManifest], None]) -> None:
        """Call ``listener`` with every manifest that comes into force from now on."""
        self._listeners.append(listener)

    async def load(self, store: Store) -> None:
        """Use ``store`` for history and bring the newest validly chained version into force."""
        self._store = store
        async with store.read() as conn:
            rows = (
                await conn.execute(
                    select(manifests.c.version, manifests.c.document).order_by(manifests.c.version)
                )
            ).all()
        current = self._current
        for row in rows:
            if int(row.version) <= current.manifest.version:
                continue
            try:
                candidate = parse_signed_manifest(str(row.document).encode())
                accept_update(current, candidate)
            except FederationError as exc:
                log.warning("stored_manifest_skipped", version=int(row.version), code=exc.code)
                continue
            current = candidate
        if current is not self._current:
            log.info("manifest_restored", version=current.manifest.version)
            self._set(current)
        await self._save(self._current)

    async def accept(self, new: SignedManifest) -> bool:
        """Bring ``new`` into force if it validly follows the current version.

        Returns False when ``new`` is exactly the version in force (nothing to do).  Raises
        VerificationError (``manifest_version_not_newer``, ``manifest_quorum_not_met``, ...)
        otherwise; nothing is stored then.
        """
        async with self._lock:
            cur = self._current
            if new.manifest.version == cur.manifest.version and _document(new) == _document(cur):
                return False
            accept_update(cur, new)
            await self._save(new)
            self._set(new)
        log.info("manifest_accepted", version=new.manifest.version)
        return True

    async def accept_chain(self, chain: Sequence[SignedManifest]) -> int:
        """Accept versions in order, skipping ones not newer; how many came into force."""
        accepted = 0
        for signed in sorted(chain, key=lambda s: s.manifest.version):
            if signed.manifest.version <= self.manifest.version:
                continue
            if await self.accept(signed):
                accepted += 1
        return accepted

    async def history(self, after: int, limit: int = MAX_CHAIN) -> list[SignedManifest]:
        """Accepted versions newer than ``after``, oldest first (the chain a peer needs)."""
        if self._store is None:
            return [self._current] if self._current.manifest.version > after else []
        async with self._store.read() as conn:
            rows = (
                await conn.execute(
                    select(manifests.c.document)
                    .where(manifests.c.version > after)
                    .order_by(manifests.c.version)
                    .limit(limit)
                )
            ).all()
        return [parse_signed_manifest(str(r.document).encode()) for r in rows]

    def _set(self, signed: SignedManifest) -> None:
        self._current = signed
        for listener in self._listeners:
            # The version is in force (and stored) whatever a listener does: one failing must
            # not leave the others (authentication, replication) on the previous version.
            try:
                listener(signed)
            except Exception:
                log.exception("manifest_listener_failed", version=signed.manifest.version)

    async def _save(self, signed: SignedManifest) -> None:
        if self._store is None:
            return
        row = {
            "version": signed.manifest.version,
            "document": _document(signed),
            "accepted_at": int(self._clock()),
        }
        dialect = postgresql if self._store.backend == "postgresql" else sqlite
        async with self._store.transaction() as conn:
            await conn.execute(dialect.insert(manifests).values(**row).on_conflict_do_nothing())


def parse_chain(value: Any) -> list[SignedManifest]:
    """The ``{"manifests": [...]}`` answer of ``GET /v1/manifests``; VerificationError if bad."""
    items = value.get("manifests") if isinstance(value, dict) else None
    if not isinstance(items, list) or len(items) > MAX_CHAIN:
        raise VerificationError("manifest chain must be a list", code="invalid_manifest")
    return [parse_signed_manifest(json.dumps(item).encode()) for item in items]


class ManifestGossip:
    """Polls peers for newer manifests and pushes accepted ones (see module docstring)."""

    def __init__(
        self,
        keeper: ManifestKeeper,
        clients: Callable[[], Mapping[str, PeerClient]],
        *,
        poll_interval: float,
    ) -> None:
        self._keeper = keeper
        self._clients = clients
        self._interval = poll_interval
        self._task: asyncio.Task[None] | None = None
        self._pushes: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    def start(self) -> None:
        """Start polling in the background."""
        self._task = asyncio.create_task(self._run(), name="manifest-poll")

    async def close(self) -> None:
        """Stop polling and pushing."""
        self._stopping.set()
        tasks = [t for t in (self._task, *self._pushes) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def push(self, signed: SignedManifest, *, skip: str | None = None) -> None:
        """Offer ``signed`` to every peer (except ``skip``, who sent it) in the background."""
        if self._stopping.is_set():
            return
        body = signed_manifest_json(signed)
        for peer_id, client in self._clients().items():
            if peer_id == skip:
                continue
            task = asyncio.create_task(self._push_one(client, body), name=f"manifest-{peer_id}")
            self._pushes.add(task)
            task.add_done_callback(self._pushes.discard)

    async def _push_one(self, client: PeerClient, body: dict[str, Any]) -> None:
        try:
            await client.post_json("/v1/manifest", body)
        except FederationError as exc:
            log.info("manifest_push_failed", peer=client.peer_id, code=exc.code)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval)
            if not self._stopping.is_set():
                await self.poll_once()

    async def poll_once(self) -> int:
        """Ask every peer once; how many versions came into force."""
        accepted = 0
        for peer_id, client in sorted(self._clients().items()):
            try:
                accepted += await self._poll_peer(client)
            except FederationError as exc:
                log.info("manifest_poll_failed", peer=peer_id, code=exc.code)
        return accepted

    async def _poll_peer(self, client: PeerClient) -> int:
        ours = self._keeper.manifest.version
        latest = parse_signed_manifest(await client.get_raw("/v1/manifest"))
        if latest.manifest.version <= ours:
            return 0
        try:
            chain = parse_chain(await client.get_json("/v1/manifests", {"after": ours}))
        except PeerHTTPError:
            chain = []
        accepted = await self._keeper.accept_chain([*chain, latest])
        if accepted:
            self.push(self._keeper.current, skip=client.peer_id)
        return accepted
