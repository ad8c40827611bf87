"""The member's own content hashes, for retroactive alerts (ARCHITECTURE §10).

A platform registers hashes of content it already hosts; they stay on its node (the
``local_content`` table), are never written to any log and never leave the node.  When a new
submission arrives from any member, the node checks it against this small index — PDQ within
the policy threshold, MD5/SHA-256 exactly — so the platform learns that something it hosts was
just confirmed as abuse material elsewhere, without having to re-query everything it holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from federation.index import EntryRef, MatchIndex, PdqIndex

_LOCAL = "local"


@dataclass(frozen=True)
class LocalHit:
    """One local content row that a new submission matched."""

    local_id: int
    distance: int


class LocalContent:
    """In-memory index of local content rows, keyed by their row id."""

    def __init__(self, pdq_threshold: int) -> None:
        self.pdq_threshold = pdq_threshold
        # small: a platform's registered content; segments are not worth building often
        self._index = MatchIndex(PdqIndex(radius_default=pdq_threshold))
        self._ids: set[int] = set()

    def add(self, local_id: int, kind: str, value: str) -> None:
        """Index one local content row (idempotent per id)."""
        if local_id in self._ids:
            return
        self._index.add(kind, value, EntryRef(_LOCAL, local_id))
        self._ids.add(local_id)

    def set_threshold(self, pdq_threshold: int) -> None:
        """Check new submissions within ``pdq_threshold`` from now on (a manifest update
        changed the policy); future segments of the small index are laid out for it too."""
        self.pdq_threshold = pdq_threshold
        self._index.pdq.radius_default = pdq_threshold

    def check(self, kind: str, value: str) -> list[LocalHit]:
        """Local rows matching a new signal: PDQ within the threshold, others exactly."""
        if not self._ids:
            return []
        found = self._index.match(kind, value, self.pdq_threshold if kind == "pdq" else None)
        return [LocalHit(m.ref.index, m.distance) for m in found]

    def __len__(self) -> int:
        return len(self._ids)
