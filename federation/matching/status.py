"""Aggregate status of indexed entries from members' opinions, and quarantine (ARCHITECTURE §9).

Opinions travel in each member's own log; every node folds them into one status per target
entry so match results tell a platform how far to trust a hit:

- ``active`` — no member has objected;
- ``disputed`` — at least one member's current verdict is ``false_positive`` or
  ``disputed_label`` (the counts are shown alongside);
- *quarantined* — ``policy.quarantine_false_positives`` (> 0) distinct members other than the
  origin currently hold ``false_positive``.  A quarantined entry is treated like a retracted
  one while it stays so — it never appears in match results and raises no alerts — but unlike a
  retraction it is reversible: if members change their verdicts the entry matches again.  That
  is why it is a filter at result time, not a tombstone in the index.

A member's *latest* opinion about an entry replaces its earlier one (logs are ordered, so
"latest" is well defined per member), which lets a member correct a mistaken verdict.  Only
entries that received opinions cost memory here; the rest are ``active`` by absence.

The threshold follows the manifest in force: :meth:`OpinionBook.set_quarantine_after`
re-evaluates every entry with opinions when an accepted update changes it (spec/sync.md §10),
so the quarantined set is always what the current threshold says, whichever threshold was in
force when each opinion arrived.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

EntryKey = tuple[str, int]
"""(member id of the origin, log index) of an entry."""

VERDICTS = ("true_positive", "false_positive", "disputed_label")
_OBJECTIONS = frozenset({"false_positive", "disputed_label"})


@dataclass(frozen=True)
class EntryStatus:
    """What the federation currently says about one entry."""

    status: str
    """``active`` or ``disputed``."""
    opinions: dict[str, int]
    """Distinct members per current verdict (every verdict present, zero when none)."""
    quarantined: bool
    """True when enough independent members call it a false positive (see module doc)."""


ACTIVE = EntryStatus("active", {}, quarantined=False)


class OpinionBook:
    """Current verdict of every member about every entry that received an opinion."""

    def __init__(self, quarantine_after: int) -> None:
        self.quarantine_after = quarantine_after
        self._verdicts: dict[EntryKey, dict[str, str]] = {}
        self._quarantined: set[EntryKey] = set()

    def record(self, target: EntryKey, member: str, verdict: str) -> None:
        """Fold in ``member``'s verdict on ``target`` (replacing its earlier one), O(1)."""
        if verdict not in VERDICTS:
            return  # unknown verdicts cannot reach here (entries are validated); ignore safely
        by_member = self._verdicts.setdefault(target, {})
        by_member[member] = verdict
        if self._reaches(target, by_member, self.quarantine_after):
            self._quarantined.add(target)
        else:
            self._quarantined.discard(target)

    def set_quarantine_after(self, quarantine_after: int) -> None:
        """Use ``quarantine_after`` from now on and re-evaluate every entry with opinions under
        it, both ways: lowering it quarantines the entries that now reach it, raising it (or
        0, which disables quarantine) releases those below it.

        O(opinions held).  The new set is built aside and swapped in by one assignment, so a
        reader never sees some entries judged by the old threshold and some by the new.
        """
        self._quarantined = {
            target
            for target, by_member in self._verdicts.items()
            if self._reaches(target, by_member, quarantine_after)
        }
        self.quarantine_after = quarantine_after

    @staticmethod
    def _reaches(target: EntryKey, by_member: dict[str, str], quarantine_after: int) -> bool:
        """Whether enough members other than the origin currently call ``target`` a false
        positive (never, when quarantine is disabled)."""
        if quarantine_after <= 0:
            return False
        independent = sum(
            1 for m, v in by_member.items() if v == "false_positive" and m != target[0]
        )
        return independent >= quarantine_after

    def is_quarantined(self, target: EntryKey) -> bool:
        """Whether ``target`` is currently withheld from results."""
        return target in self._quarantined

    def status(self, target: EntryKey) -> EntryStatus:
        """The aggregate status of ``target`` (``ACTIVE`` when nobody gave an opinion)."""
        by_member = self._verdicts.get(target)
        if not by_member:
            return ACTIVE
        counts = Counter(by_member.values())
        opinions = {v: counts.get(v, 0) for v in VERDICTS}
        disputed = any(counts.get(v, 0) for v in _OBJECTIONS)
        return EntryStatus(
            "disputed" if disputed else "active", opinions, target in self._quarantined
        )

    def __len__(self) -> int:
        return len(self._verdicts)

    @property
    def quarantined_count(self) -> int:
        """Entries currently quarantined."""
        return len(self._quarantined)
