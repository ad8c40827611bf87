"""Rows of the ``entries`` table from signed entries, and back.

The leaf bytes are the only source of truth; the other columns are derived from them here, in
one place, for the match index and for lookups by signal or target.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from federation.core.canonical import canonical_json
from federation.core.entries import Opinion, Retraction, SignedEntry, Submission
from federation.core.labels import Labels
from federation.core.signals import PdqSignal


@lru_cache(maxsize=4096)
def _labels_json(labels: Labels) -> str:
    # A log holds few distinct label sets; encoding one per stored row was a third of the
    # cost of applying a replicated chunk.  Labels are frozen, so equal ones encode equally.
    return canonical_json(labels.model_dump(mode="json")).decode()


def entry_row(
    origin: str, index: int, signed: SignedEntry, leaf: bytes, leaf_hash: bytes
) -> dict[str, Any]:
    """The ``entries`` row for ``signed`` stored at ``index`` of log ``origin``."""
    entry = signed.entry
    row: dict[str, Any] = {
        "origin": origin,
        "idx": index,
        "member_id": entry.origin,
        "entry_id": entry.id,
        "kind": entry.kind,
        "created": entry.created,
        "leaf": leaf,
        "leaf_hash": leaf_hash,
        "signal_kind": None,
        "signal_value": None,
        "labels": None,
        "target_origin": None,
        "target_index": None,
        "verdict": None,
    }
    if isinstance(entry, Submission):
        row["signal_kind"] = entry.signal.kind
        row["signal_value"] = entry.signal.value
        row["labels"] = _labels_json(entry.labels)
    elif isinstance(entry, Retraction):
        row["target_origin"] = entry.target.origin
        row["target_index"] = entry.target.index
        row["verdict"] = entry.reason
    elif isinstance(entry, Opinion):
        row["target_origin"] = entry.target.origin
        row["target_index"] = entry.target.index
        row["verdict"] = entry.verdict
    return row


def pdq_quality(signed: SignedEntry) -> int | None:
    """Quality of a PDQ submission, else None."""
    entry = signed.entry
    if isinstance(entry, Submission) and isinstance(entry.signal, PdqSignal):
        return entry.signal.quality
    return None
