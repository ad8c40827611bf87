"""The match service: the node's index loaded from storage and kept current (ARCHITECTURE §10).

Lifecycle.  The node constructs ``MatchService(policy)`` before it serves, starts
:meth:`MatchService.load` in the background and calls :meth:`MatchService.on_entries` after
every append.  Until the load finishes, ``on_entries`` only *buffers*; the load first notes the
size of every log, reads exactly the entries below those sizes, and then applies the buffered
items whose index is at or past the noted size.  An entry committed before the sizes were read
is therefore loaded from storage, one committed after is applied from the buffer, and none is
lost or indexed twice.  Applying the buffer and turning ``ready`` on happen without yielding to
the event loop, so no item can slip between them.

Load speed.  The load reads each log in pages of aggregated rows (PDQ hashes as one hex string
per page, :func:`federation.matching.storage.load_pages`), decodes them in bulk and adds the
PDQ hashes of every log to the index in one call, so the whole load builds one segment.
Measured: 1M PDQ entries in SQLite load in ~1.2 s (about half reading the table, half building
the segment), ~5x faster than a row per entry, per-value validation and a segment per page.

Updates are O(1) amortised each — submissions are appended to the index, retractions set a
tombstone, opinions update a small per-entry book (:mod:`federation.matching.status`) — never a
rebuild.  Entries are keyed by (member id of the origin, log index), the form retractions and
opinions use to point at their target.

Policy.  The match policy of the manifest in force — ``pdq_threshold`` (the default radius of
matches and local-content checks) and ``quarantine_false_positives`` — is held as one
reference, :attr:`MatchService.policy`, read once per request; :meth:`MatchService.set_policy`
swaps it when an accepted manifest update changes it (spec/sync.md §10), no restart.

Memory per indexed entry is what :class:`federation.index.MatchIndex` keeps (the hash and two
numeric ref columns for PDQ).  Labels and leaf hashes are read from the database for the hits
of a request only (:func:`federation.matching.storage.entry_details`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from federation.core.entries import Opinion, Retraction, SignedEntry, Submission
from federation.core.manifest import Policy
from federation.errors import FederationError
from federation.index import EntryRef, Match, PdqIndex
from federation.index.layout import PDQ_WORDS
from federation.matching import storage
from federation.matching.dihedral import dihedral_variants
from federation.matching.entry_index import EntryIndex
from federation.matching.local import LocalContent
from federation.matching.status import EntryKey, EntryStatus, OpinionBook
from federation.store import Store

log = structlog.get_logger(__name__)

MatchItem = tuple[str, int, SignedEntry]
MAX_MATCHES = 100
"""Matches returned per query signal (closest first); the result says when more existed."""
_EMPTY = storage.LogHead("", 0)
LOAD_PAGE = 100_000
"""Log indexes per read while loading: one short read each (about 8 MB of hex at this size)."""


class NotLoadedError(FederationError):
    """A request needs the index before it has finished loading."""

    code = "not_ready"
    status = 503


@dataclass(frozen=True)
class MatchResult:
    """One entry that matched a query signal, with what a platform needs to act on it."""

    origin: str
    """Member id of the entry's origin."""
    index: int
    """Index of the entry in that member's log."""
    distance: int
    """Hamming distance (PDQ) or 0 (exact kinds)."""
    transform: str | None
    """For dihedral queries: the transform of the query that matched."""
    labels: dict[str, Any]
    """The entry's labels."""
    status: EntryStatus
    """Aggregate opinion status."""
    leaf_hash: str
    """RFC 9162 leaf hash (hex): with origin and index, enough to fetch and check a proof."""


@dataclass(frozen=True)
class SignalResult:
    """The matches of one query signal."""

    matches: list[MatchResult]
    truncated: bool
    """True when more than MAX_MATCHES entries matched (only the closest are listed)."""


class MatchService:
    """Implements the node's ``Matcher`` protocol, plus matching and local content."""

    def __init__(
        self,
        policy: Policy,
        *,
        clock: Callable[[], float] = time.time,
        page_size: int = LOAD_PAGE,
        pdq: PdqIndex | None = None,
    ) -> None:
        self.policy = policy
        self.index = EntryIndex(pdq or PdqIndex(radius_default=policy.pdq_threshold))
        self.book = OpinionBook(policy.quarantine_false_positives)
        self.local = LocalContent(policy.pdq_threshold)
        self._clock = clock
        self._page = page_size
        self._store: Store | None = None
        self._pending: list[MatchItem] | None = []
        self._retracted: set[EntryKey] = set()
        self._logs: dict[str, str] = {}  # member id -> log origin (1:1 in a federation)

    # -- Matcher protocol ------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once every stored entry is indexed."""
        return self._pending is None

    async def load(self, store: Store) -> None:
        """Index every entry held in ``store`` (see module docstring for the buffering rule)."""
        self._store = store
        heads = await storage.log_heads(store)
        for key in await self._load_logs(store, heads):
            self._retract(key)
        for local_id, kind, value in await storage.all_local(store):
            self.local.add(local_id, kind, value)
        pending = self._pending or []
        fresh = [item for item in pending if item[1] >= heads.get(item[0], _EMPTY).size]
        alerts = self._apply(fresh)
        self._pending = None
        log.info("match_index_built", buffered=len(pending), applied=len(fresh))
        await self._record_alerts(alerts)

    async def _load_logs(self, store: Store, heads: dict[str, storage.LogHead]) -> list[EntryKey]:
        """Index the entries ``[0, size)`` of every log; returns the retraction targets,
        applied by the caller after every submission, so a target is always indexed before
        its tombstone.

        The PDQ words of all logs go into one array and to the index in ONE add — one
        segment build for the whole load instead of one per page and the merges that
        followed — run on a thread, so the event loop keeps answering ``/healthz`` and
        ``/readyz`` while the segment is built (nothing else writes to the index until the
        load is over: ``on_entries`` only buffers until then).
        """
        started = time.perf_counter()
        room = sum(h.size for h in heads.values())
        words = np.empty((room, PDQ_WORDS), dtype=np.uint64)  # pages touched only as filled
        parts: list[tuple[str, npt.NDArray[np.int64]]] = []
        retractions: list[EntryKey] = []
        at = 0
        for origin, head in sorted(heads.items()):
            member = head.member_id
            if head.size:
                self._logs[member] = origin
            indexes: list[npt.NDArray[np.int64]] = []
            async for page in storage.load_pages(store, origin, 0, head.size, self._page):
                k = page.pdq_indexes.shape[0]
                words[at : at + k] = page.pdq_words
                at += k
                indexes.append(page.pdq_indexes)
                for r in page.others:
                    if r.kind == "submission" and r.signal_kind and r.signal_value:
                        self.index.add(r.signal_kind, r.signal_value, EntryRef(member, r.idx))
                    elif r.kind == "retraction" and r.target_origin is not None:
                        retractions.append((r.target_origin, int(r.target_index or 0)))
                    elif r.kind == "opinion" and r.target_origin is not None and r.verdict:
                        target = (r.target_origin, int(r.target_index or 0))
                        self.book.record(target, member, r.verdict)
            if indexes:
                parts.append((member, np.concatenate(indexes)))
        read = time.perf_counter()
        await asyncio.to_thread(self.index.add_pdq_words, words[:at], parts)
        log.info(
            "match_index_read",
            entries=room,
            pdq=at,
            read_seconds=round(read - started, 3),
            build_seconds=round(time.perf_counter() - read, 3),
        )
        return retractions

    async def on_entries(self, items: Sequence[MatchItem]) -> None:
        """Make just-appended entries matchable (or buffer them while loading)."""
        if self._pending is not None:
            self._pending.extend(items)
            return
        await self._record_alerts(self._apply(items))

    def set_policy(self, policy: Policy) -> None:
        """Match with ``policy`` from the next request on: its ``pdq_threshold`` is the default
        radius of matches and local-content checks, and its ``quarantine_false_positives`` is
        re-applied to every entry with opinions (lowering it quarantines the entries that now
        reach it, raising it releases those below it; ``stats`` counts follow).

        Synchronous, nothing awaited: on the event loop no request or append runs between its
        steps, so each sees the old policy or the new one, never half.  A request already past
        its index search finishes with the radius and quarantine it searched with.  Costs
        O(entries with opinions), only when one of the two values changes.
        """
        old = self.policy
        if (old.pdq_threshold, old.quarantine_false_positives) != (
            policy.pdq_threshold,
            policy.quarantine_false_positives,
        ):
            self.book.set_quarantine_after(policy.quarantine_false_positives)
            self.local.set_threshold(policy.pdq_threshold)
            # layout tuning of segments built from now on; any radius stays exact regardless
            self.index.pdq.radius_default = policy.pdq_threshold
            log.info(
                "match_policy_changed",
                pdq_threshold=policy.pdq_threshold,
                quarantine_false_positives=policy.quarantine_false_positives,
                quarantined=self.book.quarantined_count,
            )
        self.policy = policy

    def stats(self) -> dict[str, int]:
        """Index sizes by kind, tombstones, entries with opinions, quarantined, local content."""
        return {
            "pdq": len(self.index.pdq),
            "md5": len(self.index.md5),
            "sha256": len(self.index.sha256),
            "retracted": len(self._retracted),
            "with_opinions": len(self.book),
            "quarantined": self.book.quarantined_count,
            "local_content": len(self.local),
        }

    # -- updates ---------------------------------------------------------------------------

    def _apply(self, items: Sequence[MatchItem]) -> list[dict[str, Any]]:
        """Apply new entries in order; returns alert rows for local content they match.

        Consecutive PDQ submissions of one member go to the index as ONE batch (flushed before
        anything that could refer to them, a retraction): adding a batch of 100 one hash at a
        time cost more than appending it to the log, and left 100 small arrays behind.
        """
        now = int(self._clock())
        alerts: list[tuple[EntryKey, dict[str, Any]]] = []
        pdq_member = ""
        pdq_values: list[str] = []
        pdq_indexes: list[int] = []

        def flush() -> None:
            if pdq_values:
                self.index.add_pdq_batch(pdq_values, pdq_member, pdq_indexes)
                pdq_values.clear()
                pdq_indexes.clear()

        for origin, idx, signed in items:
            entry = signed.entry
            self._logs[entry.origin] = origin
            if isinstance(entry, Submission):
                key = (entry.origin, idx)
                if key in self._retracted:
                    continue
                kind, value = entry.signal.kind, entry.signal.value
                if kind == "pdq":
                    if entry.origin != pdq_member:
                        flush()
                        pdq_member = entry.origin
                    pdq_values.append(value)
                    pdq_indexes.append(idx)
                else:
                    self.index.add(kind, value, EntryRef(entry.origin, idx))
                for hit in self.local.check(kind, value):
                    alerts.append(
                        (
                            key,
                            {
                                "local_id": hit.local_id,
                                "origin": origin,
                                "idx": idx,
                                "distance": hit.distance,
                                "created": now,
                            },
                        )
                    )
            elif isinstance(entry, Retraction):
                flush()
                self._retract((entry.target.origin, entry.target.index))
            elif isinstance(entry, Opinion):
                target = (entry.target.origin, entry.target.index)
                self.book.record(target, entry.origin, entry.verdict)
        flush()
        # Judged after the whole batch: an entry retracted or quarantined by a later item of
        # the same batch (or quarantined by opinions that arrived before it) raises no alert
        # (spec/protocol.md §13: "neither retracted nor quarantined").
        return [
            alert
            for key, alert in alerts
            if key not in self._retracted and not self.book.is_quarantined(key)
        ]

    def _retract(self, key: EntryKey) -> None:
        self._retracted.add(key)
        self.index.remove(EntryRef(*key))

    async def _record_alerts(self, alerts: list[dict[str, Any]]) -> None:
        if alerts and self._store is not None:
            await storage.insert_alerts(self._store, alerts)
            log.info("local_content_alerted", alerts=len(alerts))

    # -- queries ---------------------------------------------------------------------------

    def _store_or_fail(self) -> Store:
        if self._store is None or not self.ready:
            raise NotLoadedError("the match index is still loading")
        return self._store

    def search(
        self, kind: str, value: str, max_distance: int | None, *, dihedral: bool = False
    ) -> list[Match]:
        """Index hits of one normalised signal, minus quarantined entries (no DB access)."""
        if kind == "pdq":
            radius = self.policy.pdq_threshold if max_distance is None else max_distance
            variants = dihedral_variants(value) if dihedral else None
            found = self.index.match("pdq", value, radius, dihedral=variants)
        else:
            found = self.index.match(kind, value)
        if not len(self.book):
            return found
        return [m for m in found if not self.book.is_quarantined((m.ref.origin, m.ref.index))]

    async def match(
        self,
        signals: Sequence[tuple[str, str]],
        max_distance: int | None = None,
        *,
        dihedral: bool = False,
    ) -> list[SignalResult]:
        """Matches of each (kind, normalised value), ordered by (distance, origin, index)."""
        store = self._store_or_fail()
        radius = self.policy.pdq_threshold if max_distance is None else max_distance  # one read
        hits = [self.search(k, v, radius, dihedral=dihedral) for k, v in signals]
        refs = sorted(
            {(self._logs[m.ref.origin], m.ref.index) for found in hits for m in found[:MAX_MATCHES]}
        )
        details = await storage.entry_details(store, refs) if refs else {}
        out: list[SignalResult] = []
        for found in hits:
            results: list[MatchResult] = []
            for m in found[:MAX_MATCHES]:
                d = details.get((self._logs[m.ref.origin], m.ref.index))
                key = (m.ref.origin, m.ref.index)
                if d is None or key in self._retracted:  # retracted while we read details
                    continue
                results.append(
                    MatchResult(
                        m.ref.origin,
                        m.ref.index,
                        m.distance,
                        m.transform,
                        d.labels,
                        self.book.status(key),
                        d.leaf_hash,
                    )
                )
            out.append(SignalResult(results, len(found) > MAX_MATCHES))
        return out

    # -- local content ---------------------------------------------------------------------

    async def add_local(self, items: Sequence[tuple[str, str, str]]) -> list[int]:
        """Store and index local content (ref, kind, normalised value); returns row ids."""
        store = self._store_or_fail()
        ids = await storage.insert_local(store, items, int(self._clock()))
        for local_id, (_, kind, value) in zip(ids, items, strict=True):
            self.local.add(local_id, kind, value)
        return ids

    async def alerts(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Recorded alerts after id ``after`` (oldest first)."""
        return await storage.list_alerts(self._store_or_fail(), after, limit)
