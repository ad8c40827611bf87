"""Pull replication of every other member's log, with checkpoint gossip (spec/sync.md).

For each origin the replicator keeps the last verified (size, root) in storage and, when polled
or poked, pulls from the origin itself or — if the origin is unreachable or misbehaves — from
any peer that mirrors it (authority comes from the origin's signatures, never the relay's).
One pull fetches a checkpoint and moves the mirror to it in verified chunks
(:mod:`federation.sync.pull`): a bad chunk leaves nothing of itself behind.  Cursors are tree
sizes, never timestamps.

Failures are charged to the peer that served the data (exponential backoff, see
:mod:`federation.sync.health`).  Inconsistent checkpoints are charged to the *origin*: proven
forks, and origin-served proofs that fail, are stored as evidence and freeze the log.  So are
two leaves of the log with one entry id (:class:`~federation.log.mirror.DuplicateEntry`): both
are signed by the origin and proven in its tree, whoever served them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any, Final

import structlog

from federation.core.checkpoint import Checkpoint
from federation.core.entries import parse_leaf
from federation.core.manifest import Manifest, Member
from federation.core.note import SignedNote
from federation.core.replication import (
    CHECKPOINT_ROLLBACK,
    WITNESS_QUORUM_NOT_MET,
    InconsistentCheckpoint,
    TrustedState,
    check_witness_quorum,
    describe,
    open_member_checkpoint,
)
from federation.errors import ConflictError, FederationError, InputError, VerificationError
from federation.log import mirror, tree
from federation.store import Store
from federation.sync import health as h
from federation.sync.client import MAX_PAGE, PeerClient, PeerHTTPError
from federation.sync.pull import AppliedItem, PullSettings, pull_range

log = structlog.get_logger(__name__)

__all__ = ["AppliedItem", "Replicator"]
DEFAULT_MAX_SYNC_LEAVES: Final = 10_000
"""Leaves verified and applied per transaction when catching up (memory bound)."""


class _StaleSource(Exception):
    """A relay holds an older (but consistent) checkpoint than ours: not a failure."""


class Replicator:
    """Pulls, verifies and applies other members' logs (see module docstring)."""

    def __init__(
        self,
        store: Store,
        manifest: Manifest,
        self_id: str,
        peers: Mapping[str, PeerClient],
        clock: Callable[[], float],
        on_applied: Callable[[list[AppliedItem]], object],
        *,
        poll_interval: float = 30.0,
        page_size: int = MAX_PAGE,
        max_sync_leaves: int = DEFAULT_MAX_SYNC_LEAVES,
    ) -> None:
        self.store = store
        self.manifest = manifest
        """The manifest in force; the node replaces it when a new version is accepted."""
        self.self_id = self_id
        self.peers = dict(peers)
        self._clock = clock
        self._on_applied = on_applied
        self.poll_interval = poll_interval
        self.settings = PullSettings(max(1, min(page_size, MAX_PAGE)), max(1, max_sync_leaves))
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._peer_health = {p: h.PeerHealth(p) for p in self.peers}
        self._origin_health: dict[str, h.OriginHealth] = {}
        self._hints: dict[str, tuple[int, str, str | None]] = {}  # origin -> (size, note, src)
        self._pending: set[str] = set()
        self._running: set[str] = set()
        self._wake = asyncio.Event()
        self._stopping = False

    # --- state ------------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self._clock())

    def origins(self) -> list[str]:
        """Member ids whose logs this node mirrors: everyone else in the manifest."""
        return sorted(m.id for m in self.manifest.members if m.id != self.self_id)

    def _origin(self, member_id: str) -> h.OriginHealth:
        return self._origin_health.setdefault(member_id, h.OriginHealth(member_id))

    async def load(self) -> None:
        """Read peer health and mirrored sizes from storage (call once before :meth:`run`)."""
        async with self.store.read() as conn:
            stored = await h.load_peer_health(conn)
            for member_id in self.origins():
                member = self.manifest.member(member_id)
                assert member is not None
                trusted = await mirror.load_trusted(conn, member.log_origin)
                oh = self._origin(member_id)
                oh.size = 0 if trusted is None else trusted.size
                oh.frozen = await mirror.is_frozen(conn, member.log_origin)
        for peer_id, ph in stored.items():
            if peer_id in self._peer_health:
                self._peer_health[peer_id] = ph
        await self._reindex_unsigned()

    async def _reindex_unsigned(self) -> None:
        """Hand leaves of a catch-up cut short by a restart to ``on_applied`` once more.

        They were applied before the restart, but the match index loads each log only up to
        its signed size; without this they would be held yet unmatchable until restart.
        """
        for member_id in self.origins():
            member = self._member(member_id)
            async with self.store.read() as conn:
                async for page in mirror.unsigned_leaves(conn, member.log_origin):
                    items = [(member.log_origin, i, parse_leaf(leaf)) for i, leaf in page]
                    result = self._on_applied(items)
                    if inspect.isawaitable(result):
                        await result

    def status(self) -> dict[str, Any]:
        """Per origin and per peer sync state, for ``/v1/status``."""
        return {
            "origins": {k: v.as_json() for k, v in sorted(self._origin_health.items())},
            "peers": {k: v.as_json() for k, v in sorted(self._peer_health.items())},
        }

    async def reset_backoff(self, peer_id: str) -> None:
        """Inbound authenticated contact from ``peer_id``: it is alive, ask it again at once
        (unless it is distrusted for serving unverifiable copies of *other* members' logs:
        contact proves liveness, not honesty; see :mod:`federation.sync.health`)."""
        ph = self._peer_health.get(peer_id)
        if ph is None or ph.distrusted - {peer_id}:
            return
        # Distrust for its own log is lifted: the origin announcing a new checkpoint of its
        # log is worth one more pull (it is the authority for that log, and the pull verifies).
        ph.distrusted.discard(peer_id)
        if ph.failures or ph.backoff_until:
            ph.failures, ph.backoff_until = 0, 0
            async with self.store.transaction() as conn:
                await h.save_peer_health(conn, ph)

    def add_peer(self, peer_id: str, client: PeerClient) -> None:
        """Use ``peer_id`` as a source from now on (a manifest update added it)."""
        self.peers[peer_id] = client
        self._peer_health.setdefault(peer_id, h.PeerHealth(peer_id))

    def remove_peer(self, peer_id: str) -> None:
        """Stop using ``peer_id`` as a source (a manifest update dropped it).  A pull already
        using it finishes; its outcome is then charged to nobody but the origin's status."""
        self.peers.pop(peer_id, None)
        self._peer_health.pop(peer_id, None)

    def peer_moved(self, peer_id: str) -> bool:
        """``peer_id``'s endpoint changed (a manifest update): ask it again at once.

        Failures at the old address say nothing about the new one, so its backoff is cleared
        — unless it is distrusted for serving unverifiable data, which a new address does not
        undo (see :mod:`federation.sync.health`).  True when something was cleared; the
        caller then persists it with :meth:`save_peer`.
        """
        ph = self._peer_health.get(peer_id)
        if ph is None or ph.distrusted or not (ph.failures or ph.backoff_until):
            return False
        ph.failures, ph.backoff_until = 0, 0
        return True

    async def save_peer(self, peer_id: str) -> None:
        """Write ``peer_id``'s health through to storage (if it is still a peer)."""
        ph = self._peer_health.get(peer_id)
        if ph is not None:
            async with self.store.transaction() as conn:
                await h.save_peer_health(conn, ph)

    # --- pulling ----------------------------------------------------------------------------

    def _member(self, member_id: str) -> Member:
        member = self.manifest.member(member_id)
        if member is None or member_id == self.self_id:
            raise InputError(f"{member_id!r} is not a log this node mirrors", code="unknown_log")
        return member

    def _sources(self, origin: str, now: int) -> list[tuple[str, PeerClient]]:
        """Usable sources, the origin first, with their clients as of now: a manifest update
        during the pull may drop or re-point a peer, and the pull goes on with these."""
        ordered = ([origin] if origin in self.peers else []) + sorted(
            p for p in self.peers if p != origin
        )
        return [(p, self.peers[p]) for p in ordered if self._peer_health[p].usable(now)]

    async def sync_origin(self, origin: str) -> int:
        """Pull ``origin``'s log up to the newest checkpoint a source offers; new leaves count."""
        member = self._member(origin)
        async with self._locks[origin]:
            now = self._now()
            oh = self._origin(origin)
            total = 0
            waiting: str | None = None  # a source's "not yet cosigned", shown over relays' errors
            for source, client in self._sources(origin, now):
                async with self.store.read() as conn:
                    oh.frozen = await mirror.is_frozen(conn, member.log_origin)
                    trusted = await mirror.load_trusted(conn, member.log_origin)
                if oh.frozen:
                    return total
                try:
                    total += await self._pull(source, client, member, trusted, now)
                except _StaleSource:
                    continue
                except PeerHTTPError as exc:
                    if exc.http_status == 404 and source != origin:
                        continue  # this peer does not mirror that log: not its failure
                    await self._fail(origin, source, exc, now)
                    continue
                except InconsistentCheckpoint as exc:
                    if exc.proven or source == origin:
                        await self._evidence(member, exc, source, now)
                        return total
                    await self._fail(origin, source, exc, now)
                    continue
                except mirror.DuplicateEntry as exc:
                    await self._duplicate(member, exc, source, now)
                    return total
                except ConflictError as exc:  # another applier moved the log: retry later
                    oh.last_error, oh.last_error_at = describe(exc), now
                    return total
                except VerificationError as exc:
                    if exc.code != WITNESS_QUORUM_NOT_MET:
                        await self._fail(origin, source, exc, now)
                        continue
                    # Not yet cosigned is the normal state just after an append, not the
                    # source's fault: no backoff; the cosigned note's doorbell or poll retries.
                    waiting = waiting or f"{source}: {describe(exc)}"
                    oh.last_error, oh.last_error_at = waiting, now
                    continue
                except FederationError as exc:
                    await self._fail(origin, source, exc, now)
                    continue
                await self._succeed(origin, source, now)
                waiting = None
                hint = self._hints.get(origin)
                if hint is None or hint[0] <= oh.size:
                    break  # nobody told us of anything newer
            if waiting is not None:
                # Why the origin is not applied is the missing cosignatures, not a relay that
                # happened to be unreachable after it (each source's own error is in ``peers``).
                oh.last_error, oh.last_error_at = waiting, now
            await self._check_hint(member)
            return total

    async def _pull(
        self,
        source: str,
        client: PeerClient,
        member: Member,
        trusted: TrustedState | None,
        now: int,
    ) -> int:
        m = 0 if trusted is None else trusted.size
        note = self._hinted_note(source, member, m, now) or await client.get_checkpoint(member.id)
        cp, _ = open_member_checkpoint(member, note)
        if trusted is not None and cp.size < m:
            await self._compare_older(member, trusted, note, cp.size, cp.root)
            if source == member.id:
                raise VerificationError(
                    f"origin serves checkpoint {cp.size}, older than our {m}",
                    code=CHECKPOINT_ROLLBACK,
                )
            raise _StaleSource
        try:
            count, _ = await pull_range(
                client,
                member,
                trusted,
                note,
                cp,
                store=self.store,
                manifest=self.manifest,
                now=now,
                settings=self.settings,
                on_applied=self._on_applied,
                on_progress=lambda size: setattr(self._origin(member.id), "size", size),
            )
        finally:
            async with self.store.read() as conn:
                held = await mirror.load_trusted(conn, member.log_origin)
            self._origin(member.id).size = 0 if held is None else held.size
        return count

    def _hinted_note(self, source: str, member: Member, m: int, now: int) -> str | None:
        """A doorbell's checkpoint to pull against instead of asking ``source`` for one.

        Only when ``source`` certainly holds every leaf it covers — the origin itself (its log
        never shrinks) or the peer that rang with it — and it is ahead of our ``m``.  It saves
        one round trip per pull; it is verified exactly like a fetched note (:func:`pull_range`
        re-checks the signature, quorum, consistency and every leaf).  A note that would not
        meet the witness quorum is not used: the source may hold a cosigned one.
        """
        hint = self._hints.get(member.id)
        if hint is None or hint[0] <= m or source not in (member.id, hint[2]):
            return None
        try:
            _, signed = open_member_checkpoint(member, hint[1])
            check_witness_quorum(signed, self.manifest, now)
        except VerificationError:
            return None
        return hint[1]

    async def _compare_older(
        self, member: Member, trusted: TrustedState, note: str, size: int, root: bytes
    ) -> None:
        """A signed checkpoint at or below our size must match our verified tree there."""
        if size == 0:
            return
        async with self.store.read() as conn:
            ours = (
                trusted.root
                if size == trusted.size
                else await mirror.root_at(conn, member.log_origin, size)
            )
            if ours == root:
                return
            proof = (
                await tree.consistency_proof(conn, member.log_origin, size, trusted.size)
                if size < trusted.size
                else []
            )
        raise InconsistentCheckpoint(
            f"checkpoint {size} of {member.id} differs from our verified tree at that size",
            trusted_note=trusted.note,
            new_note=note,
            proof=proof,
            proven=True,
        )

    # --- gossip -----------------------------------------------------------------------------

    async def check_gossip(self, origin: str, note: str, source: str | None) -> str:
        """Compare a checkpoint of ``origin`` a peer holds with ours; pull if it is newer.

        Returns ``"known"`` (consistent with what we hold), ``"pull"`` (newer: a pull is
        scheduled) or ``"frozen"``.  Raises VerificationError if the note is not validly signed
        by the origin — such a note proves nothing and is never stored.
        """
        member = self._member(origin)
        cp, _ = open_member_checkpoint(member, note)
        async with self.store.read() as conn:
            if await mirror.is_frozen(conn, member.log_origin):
                return "frozen"
            trusted = await mirror.load_trusted(conn, member.log_origin)
        if trusted is not None and cp.size <= trusted.size:
            try:
                await self._compare_older(member, trusted, note, cp.size, cp.root)
            except InconsistentCheckpoint as exc:
                await self._evidence(member, exc, source, self._now())
                return "frozen"
            return "known"
        best = self._hints.get(origin)
        if best is None or cp.size > best[0]:
            self._hints[origin] = (cp.size, note, source)
        self.poke(origin)
        return "pull"

    async def _check_hint(self, member: Member) -> None:
        hint = self._hints.get(member.id)
        if hint is None:
            return
        size, note, source = hint
        async with self.store.read() as conn:
            trusted = await mirror.load_trusted(conn, member.log_origin)
        if trusted is None or size > trusted.size:
            return  # still ahead of us: keep it for the next pull
        del self._hints[member.id]
        try:
            await self._compare_older(member, trusted, note, size, _root_of(note))
        except InconsistentCheckpoint as exc:
            await self._evidence(member, exc, source, self._now())

    # --- outcomes ---------------------------------------------------------------------------

    async def _evidence(
        self, member: Member, exc: InconsistentCheckpoint, source: str | None, now: int
    ) -> None:
        reason = describe(exc) + ("" if exc.proven else f" (proof served by origin {source})")
        async with self.store.transaction() as conn:
            await mirror.record_evidence(
                conn,
                member.log_origin,
                exc.trusted_note or "",
                exc.new_note,
                reason,
                now=now,
                proof=exc.proof,
                source=source,
            )
        oh = self._origin(member.id)
        oh.frozen, oh.last_error, oh.last_error_at = reason, reason, now
        log.error("split_view_detected", origin=member.id, source=source, reason=reason)

    async def _duplicate(
        self, member: Member, exc: mirror.DuplicateEntry, source: str, now: int
    ) -> None:
        """Store duplicate-id evidence and freeze the origin; the source is not charged (it
        served the origin's signed leaves faithfully)."""
        reason = describe(exc)
        async with self.store.transaction() as conn:
            await mirror.record_duplicate(
                conn, member.log_origin, exc, reason, now=now, source=source
            )
        oh = self._origin(member.id)
        oh.frozen, oh.last_error, oh.last_error_at = reason, reason, now
        log.error(
            "duplicate_entry_detected",
            origin=member.id,
            source=source,
            earlier=exc.earlier.index,
            later=exc.later.index,
            reason=reason,
        )

    async def _fail(self, origin: str, source: str, exc: FederationError, now: int) -> None:
        reason = f"{source}: {describe(exc)}"
        oh = self._origin(origin)
        oh.last_error, oh.last_error_at = reason, now
        ph = self._peer_health.get(source)
        if ph is None:
            return  # dropped from the manifest while this pull used it
        distrust = origin if isinstance(exc, VerificationError) else None
        h.mark_failure(ph, describe(exc), now, distrust_origin=distrust)
        async with self.store.transaction() as conn:
            await h.save_peer_health(conn, ph)
        log.warning(
            "pull_failed", origin=origin, source=source, code=exc.code, failures=ph.failures
        )

    async def _succeed(self, origin: str, source: str, now: int) -> None:
        oh = self._origin(origin)
        oh.last_success, oh.last_source = now, source
        ph = self._peer_health.get(source)
        if ph is None:
            return  # dropped from the manifest while this pull used it
        before = (ph.failures, ph.backoff_until)
        h.mark_success(ph, now, origin)
        recovered = before != (ph.failures, ph.backoff_until)
        if recovered or ph.last_success is None or now - ph.last_success_saved >= 60:
            # Written through only when it matters (a cleared backoff) or once a minute: a
            # durable commit per successful pull would double the disk syncs on the push path.
            async with self.store.transaction() as conn:
                await h.save_peer_health(conn, ph)
            ph.last_success_saved = now

    # --- scheduling -------------------------------------------------------------------------

    def poke(self, origin: str) -> None:
        """Pull ``origin`` as soon as possible; pokes during a pull coalesce into one more."""
        self._pending.add(origin)
        self._wake.set()

    def stop(self) -> None:
        """Ask :meth:`run` to return once the pulls in flight finish."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Poll every origin every ``poll_interval`` seconds and serve pokes immediately."""
        loop = asyncio.get_running_loop()
        next_poll: dict[str, float] = {}
        async with asyncio.TaskGroup() as tg:
            while not self._stopping:
                self._wake.clear()
                now = loop.time()
                origins = self.origins()
                for gone in next_poll.keys() - origins:  # a manifest update dropped it
                    del next_poll[gone]
                self._pending.intersection_update(origins)
                for origin in origins:
                    if next_poll.get(origin, 0.0) <= now:
                        self._pending.add(origin)
                        next_poll[origin] = now + self.poll_interval
                for origin in sorted(self._pending - self._running):
                    self._pending.discard(origin)
                    self._running.add(origin)
                    tg.create_task(self._guarded(origin))
                delay = min(next_poll.values(), default=now + self.poll_interval) - now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=max(delay, 0.01))

    async def _guarded(self, origin: str) -> None:
        try:
            await self.sync_origin(origin)
        except Exception:  # one origin's bug must not stop the others; it is logged
            log.exception("pull_crashed", origin=origin)
        finally:
            self._running.discard(origin)
            self._wake.set()


def _root_of(note: str) -> bytes:
    return Checkpoint.parse_body(SignedNote.parse(note).text).root
