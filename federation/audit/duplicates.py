"""Entry ids that repeat within one log (``duplicate_entry_id``, spec/audit.md §3.8).

An honest origin's writer answers a repeated id with the entry it already holds, so two leaves
of one log with one id — both signed by the origin, both in the tree under its checkpoint — are
proof that the holder of its log key misbehaved.  The check spans the whole log, not one run:
each verified leaf leaves an 8-byte digest of its id (:func:`~federation.audit.leaves.id_digest`),
kept across runs beside
the state file (:mod:`federation.audit.state`), 8 bytes per leaf rather than the ids themselves.

Equal digests are found with numpy (one pass over the earlier leaves, a sort of the new ones);
each candidate pair is then confirmed on the leaves themselves, fetched and proven in the
target checkpoint's tree, so a digest collision is never reported and every finding carries what
a third party needs: both leaves, their inclusion proofs and the signed checkpoint.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from federation.audit import findings as F
from federation.audit.origin import OriginAudit
from federation.audit.sources import LogSource
from federation.core.entries import leaf_hash, parse_leaf
from federation.core.merkle import verify_inclusion
from federation.core.tlog import MemoryHashStore
from federation.errors import FederationError, VerificationError

MAX_REPORTED: Final = 20
"""Repeats reported per origin and run (each costs a few requests); the rest are counted."""


def repeats(digests: bytes, start: int) -> list[tuple[int, int]]:
    """(first index, later index) for each leaf at ``start`` or beyond whose id digest equals
    that of an earlier leaf; ``first`` is the earliest leaf with that digest.  Sorted by the
    later index.  ``digests`` holds 8 bytes per leaf from index 0; invalid leaves are ignored.
    """
    values = np.frombuffer(digests, dtype="<u8")
    new = values[start:]
    new = new[new != 0]
    if len(new) == 0:
        return []
    # Only leaves sharing a digest with a new leaf matter: found in one vectorised pass over
    # the earlier ones (O(n log m) for m new leaves), so an incremental run does not sort the
    # whole log again.
    index = np.flatnonzero(np.isin(values, new) if start else values)
    if len(index) < 2:
        return []
    ordered = np.argsort(values[index], kind="stable")  # equal digests keep index order
    sorted_values, sorted_index = values[index][ordered], index[ordered]
    run_start = np.empty(len(sorted_values), dtype=bool)
    run_start[0] = True
    run_start[1:] = sorted_values[1:] != sorted_values[:-1]
    first_at = np.maximum.accumulate(np.where(run_start, np.arange(len(run_start)), 0))
    later = ~run_start & (sorted_index >= start)
    pairs = zip(sorted_index[first_at[later]].tolist(), sorted_index[later].tolist(), strict=True)
    return sorted(pairs, key=lambda pair: pair[1])


class _Prover:
    """Fetches one leaf of the audited log with its inclusion proof in the target's tree,
    verified against the target's root; local proofs when this run read every leaf."""

    def __init__(self, audit: OriginAudit, sources: Sequence[LogSource]) -> None:
        self.audit = audit
        self.sources = sources
        self.size = audit.target.checkpoint.size
        self.root = audit.target.checkpoint.root
        self._tree: MemoryHashStore | None = None

    def _local_tree(self) -> MemoryHashStore | None:
        if self.audit.start != 0:
            return None  # the leaves of earlier runs are not held here
        if self._tree is None:
            tree = MemoryHashStore()
            hashes = self.audit.table.hashes
            for at in range(0, len(hashes), 32):
                tree.append(bytes(hashes[at : at + 32]))
            self._tree = tree
        return self._tree

    async def leaf(self, index: int) -> tuple[bytes, list[bytes]] | None:
        member = self.audit.member.id
        held = self.audit.table.get(index)
        for source in self.sources:
            try:
                page = await source.entries(member, index, 1)
                if not page or page[0][0] != index:
                    continue
                leaf = page[0][1]
                if held is not None and leaf_hash(leaf) != held[0]:
                    continue  # not the leaf this run verified
                tree = self._local_tree()
                proof = (
                    tree.inclusion_proof(index, self.size)
                    if tree is not None
                    else await source.inclusion(member, index, self.size)
                )
                verify_inclusion(leaf_hash(leaf), index, self.size, proof, self.root)
            except (FederationError, VerificationError):
                continue
            return leaf, proof
        return None


def _entry_id(leaf: bytes) -> str | None:
    try:
        return parse_leaf(leaf).entry.id
    except VerificationError:
        return None


def _proven(index: int, leaf: bytes, proof: list[bytes]) -> dict[str, Any]:
    return {
        "index": index,
        "leaf": base64.b64encode(leaf).decode(),
        "inclusion_proof": [base64.b64encode(p).decode() for p in proof],
    }


async def duplicate_findings(
    audit: OriginAudit,
    earlier: bytes,
    sources: Sequence[LogSource],
    *,
    limit: int = MAX_REPORTED,
) -> list[F.Finding]:
    """``duplicate_entry_id`` findings for ids of this run's leaves seen before in the log.

    ``earlier`` are the digests of leaves ``0 .. audit.start - 1`` (from earlier runs).  Call
    only once the target's root matched: until then the leaves prove nothing.
    """
    pairs = repeats(earlier + bytes(audit.table.ids), audit.start)
    if not pairs:
        return []
    member, target = audit.member.id, audit.target
    prover = _Prover(audit, sources)
    found: list[F.Finding] = []
    reported = 0
    for done, (first, later) in enumerate(pairs):
        if reported == limit:
            rest = len(pairs) - done
            found.append(
                F.fail(
                    F.DUPLICATE_ENTRY_ID,
                    member,
                    f"{rest} more leaves may repeat an earlier entry id (not fetched)",
                    unreported=rest,
                    checkpoint=target.note,
                )
            )
            break
        a, b = await prover.leaf(first), await prover.leaf(later)
        if a is None or b is None:
            found.append(
                F.anomaly(
                    F.SOURCE_UNAVAILABLE,
                    member,
                    f"could not fetch leaves {first} and {later} with valid inclusion proofs"
                    " to check an entry id they may share",
                    index=later,
                )
            )
            continue
        entry_id = _entry_id(a[0])
        if entry_id is None or entry_id != _entry_id(b[0]):
            continue  # equal digests of different ids
        reported += 1
        found.append(
            F.fail(
                F.DUPLICATE_ENTRY_ID,
                member,
                f"leaves {first} and {later} both carry entry id {entry_id!r}",
                checkpoint=target.note,
                source=target.source,
                tree_size=target.checkpoint.size,
                leaves=[_proven(first, *a), _proven(later, *b)],
            )
        )
    return found
