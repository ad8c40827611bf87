"""Rows of the ``entries`` table from signed entries, and back.

The leaf bytes are the only source of truth; the other columns are derived from them here, in
one place, for the match index and for lookups by signal or target.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from federation.core.canonical import canonical_json
from federation.core.entries import Retraction, SignedEntry, Submission
from federation.core.labels import Labels
from federation.core.signals import PdqSignal
from federation.store.bulk import columns
from federation.store.schema import entries


@lru_cache(maxsize=4096)
def _labels_json(labels: Labels) -> str:
    # A log holds few distinct label sets; encoding one per stored row was a third of the
    # cost of applying a replicated chunk.  Labels are frozen, so equal ones encode equally.
    return canonical_json(labels.model_dump(mode="json")).decode()


ENTRY_COLUMNS = columns(entries)
"""The ``entries`` columns in table order: the order of :func:`entry_values`."""


def entry_values(
    origin: str, index: int, signed: SignedEntry, leaf: bytes, leaf_hash: bytes
) -> tuple[Any, ...]:
    """The ``entries`` row for ``signed`` stored at ``index`` of log ``origin``, as a tuple in
    :data:`ENTRY_COLUMNS` order (what :func:`federation.store.bulk.insert_many` takes)."""
    entry = signed.entry
    if isinstance(entry, Submission):
        signal = entry.signal
        return (
            origin, index, entry.origin, entry.id, entry.kind, entry.created, leaf, leaf_hash,
            signal.kind, signal.value, _labels_json(entry.labels), None, None, None,
        )  # fmt: skip
    target = entry.target
    verdict = entry.reason if isinstance(entry, Retraction) else entry.verdict
    return (
        origin, index, entry.origin, entry.id, entry.kind, entry.created, leaf, leaf_hash,
        None, None, None, target.origin, target.index, verdict,
    )  # fmt: skip


def entry_row(
    origin: str, index: int, signed: SignedEntry, leaf: bytes, leaf_hash: bytes
) -> dict[str, Any]:
    """The ``entries`` row for ``signed`` stored at ``index`` of log ``origin``, by column."""
    return dict(
        zip(ENTRY_COLUMNS, entry_values(origin, index, signed, leaf, leaf_hash), strict=True)
    )


def pdq_quality(signed: SignedEntry) -> int | None:
    """Quality of a PDQ submission, else None."""
    entry = signed.entry
    if isinstance(entry, Submission) and isinstance(entry.signal, PdqSignal):
        return entry.signal.quality
    return None
