"""Retractions and opinions must name entries that exist (``dangling_reference``).

References are checked once every log has been read, against leaves verified in this run
(:class:`~federation.audit.origin.LeafTable`).  A target that an earlier run verified is not in
memory (the state keeps only the frontier), so it is fetched from any source with an inclusion
proof against the verified root of the target's log: the proof, not the source, is trusted.
Only logs whose audit completed (or an earlier verified state) count as evidence that an entry
exists or does not.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Sequence

from federation.audit import findings as F
from federation.audit.checks import check_references, disputes_by_target
from federation.audit.leaves import Reference
from federation.audit.origin import LeafTable, OriginAudit
from federation.audit.sources import LogSource
from federation.audit.state import OriginState
from federation.core.entries import Submission, leaf_hash, parse_leaf
from federation.core.manifest import Manifest
from federation.core.merkle import verify_inclusion
from federation.errors import FederationError, VerificationError


class ReferenceChecker:
    """Checks references of every origin against what the run (and earlier runs) verified."""

    def __init__(
        self,
        manifest: Manifest,
        audits: dict[str, OriginAudit],
        previous: dict[str, OriginState],
    ) -> None:
        self._audits = audits
        self._roots: dict[str, tuple[int, bytes]] = {}
        self._tables: dict[str, LeafTable] = {}
        for member in manifest.members:
            audit = audits.get(member.id)
            prev = previous.get(member.id)
            if audit is not None and audit.complete:
                cp = audit.target.checkpoint
                self._roots[member.id] = (cp.size, cp.root)
                self._tables[member.id] = audit.table
            elif prev is not None:
                self._roots[member.id] = (prev.size, bytes.fromhex(prev.root))

    def disputes(self) -> Counter[str]:
        """Disputing opinions per target member, over all references read in this run."""
        return disputes_by_target({k: a.references for k, a in self._audits.items()})

    async def check(
        self, origin: str, audit: OriginAudit, sources: Sequence[LogSource]
    ) -> list[F.Finding]:
        """Findings for ``origin``'s references (only meaningful once its own root matched)."""
        if not audit.complete:
            return []
        sizes = {k: size for k, (size, _) in self._roots.items()}
        found, unresolved = check_references(origin, audit.references, sizes, self._tables)
        for ref in unresolved:
            found += await self._fetch_and_check(origin, ref, sources)
        return found

    async def _fetch_and_check(
        self, origin: str, ref: Reference, sources: Sequence[LogSource]
    ) -> list[F.Finding]:
        size, root = self._roots[ref.target_origin]
        for source in sources:
            try:
                page = await source.entries(ref.target_origin, ref.target_index, 1)
                if not page or page[0][0] != ref.target_index:
                    continue
                leaf = page[0][1]
                proof = await source.inclusion(ref.target_origin, ref.target_index, size)
                verify_inclusion(leaf_hash(leaf), ref.target_index, size, proof, root)
            except (FederationError, VerificationError):
                continue
            problem = _compare(ref, leaf)
            if problem is None:
                return []
            return [
                F.fail(
                    F.DANGLING_REFERENCE,
                    origin,
                    f"{ref.kind} at index {ref.index} refers to"
                    f" {ref.target_origin}#{ref.target_index}: {problem}",
                    index=ref.index,
                    leaf=base64.b64encode(ref.leaf).decode(),
                    target_leaf=base64.b64encode(leaf).decode(),
                    target_inclusion_proof=[base64.b64encode(p).decode() for p in proof],
                    target_tree_size=size,
                    target_root=base64.b64encode(root).decode(),
                )
            ]
        return [
            F.anomaly(
                F.SOURCE_UNAVAILABLE,
                origin,
                f"could not fetch {ref.target_origin}#{ref.target_index} with a valid inclusion"
                f" proof to check the {ref.kind} at index {ref.index}",
                index=ref.index,
            )
        ]


def _compare(ref: Reference, leaf: bytes) -> str | None:
    if leaf_hash(leaf).hex() != ref.target_leaf_hash:
        return f"its leaf hash is {leaf_hash(leaf).hex()}"
    try:
        entry = parse_leaf(leaf).entry
    except VerificationError:
        return "the target is not a valid entry"
    if not isinstance(entry, Submission):
        return f"the target is a {entry.kind}, not a submission"
    return None
