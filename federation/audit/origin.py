"""One origin's leaves folded into its tree, with roots checked at every size of interest (pure).

The auditor streams leaves ``start .. target.size - 1`` in order (as :class:`ChunkResult` s
from worker processes) onto the compact range of the tree verified so far — the frontier
from the previous run, or the empty tree — so memory for the tree stays O(log n) however long
the log.  Whenever the stream passes a size some other checkpoint claims (a lagging node, a
checkpoint kept from an earlier run), the root at that size is compared with it: if the leaves
rebuild the target checkpoint, a different root at a smaller size proves a fork (``split_view``
or ``inconsistent_with_previous_run``) with no consistency proof needed.  Those comparisons
are only conclusive once the final root matched, so they are held until :meth:`finish`.

Leaf hashes, kinds and entry id digests of this run are kept (41 bytes per leaf) so retractions
and opinions can be checked against the entries they name once every log has been read, and
repeated entry ids found (:mod:`federation.audit.duplicates`).
"""

from __future__ import annotations

import base64
from collections import Counter
from dataclasses import dataclass, field

from federation.audit import findings as F
from federation.audit.leaves import ChunkResult, Reference
from federation.core.checkpoint import Checkpoint
from federation.core.manifest import Member
from federation.core.replication import extend_frontier, frontier_root


@dataclass(frozen=True)
class Observed:
    """A validly signed checkpoint and where it came from."""

    source: str
    note: str
    checkpoint: Checkpoint


@dataclass(frozen=True)
class RootClaim:
    """A root some party claims for a size: a checkpoint seen now or one stored last run."""

    size: int
    root: bytes
    note: str | None
    source: str
    previous_run: bool = False


@dataclass
class LeafTable:
    """Leaf hashes, kinds and id digests of indices ``base ..`` of one log, as verified in
    this run."""

    base: int
    hashes: bytearray = field(default_factory=bytearray)
    kinds: bytearray = field(default_factory=bytearray)
    ids: bytearray = field(default_factory=bytearray)

    @property
    def end(self) -> int:
        """One past the last index held."""
        return self.base + len(self.kinds)

    def get(self, index: int) -> tuple[bytes, int] | None:
        """(leaf hash, kind byte) of ``index`` if this run verified it."""
        if not self.base <= index < self.end:
            return None
        at = index - self.base
        return bytes(self.hashes[32 * at : 32 * at + 32]), self.kinds[at]


class OriginAudit:
    """Accumulates one origin's audit as chunks arrive in order (see module docstring)."""

    def __init__(
        self,
        member: Member,
        target: Observed,
        *,
        start: int,
        frontier: tuple[bytes, ...],
        claims: list[RootClaim],
        counts: dict[str, int] | None = None,
    ) -> None:
        self.member = member
        self.target = target
        self.start = start
        self.size = start
        self.frontier = frontier
        self.claims = sorted(
            (c for c in claims if start < c.size <= target.checkpoint.size), key=lambda c: c.size
        )
        self.counts: Counter[str] = Counter(counts or {})
        self.minutes: Counter[int] = Counter()
        self.findings: list[F.Finding] = []
        self.references: list[Reference] = []
        self.table = LeafTable(start)
        self._mismatches: list[tuple[RootClaim, bytes]] = []
        self.complete = False

    def apply(self, chunk: ChunkResult) -> None:
        """Fold the next chunk (its ``start`` must be the current size)."""
        if chunk.start != self.size:
            raise ValueError(f"chunk starts at {chunk.start}, expected {self.size}")
        hashes = [chunk.leaf_hashes[i : i + 32] for i in range(0, len(chunk.leaf_hashes), 32)]
        end = self.size + len(hashes)
        at = 0
        while self.claims and self.claims[0].size <= end:
            claim = self.claims.pop(0)
            cut = claim.size - chunk.start
            self.size, self.frontier = extend_frontier(self.size, self.frontier, hashes[at:cut])
            at = cut
            root = frontier_root(self.frontier)
            if root != claim.root:
                self._mismatches.append((claim, root))
        self.size, self.frontier = extend_frontier(self.size, self.frontier, hashes[at:])
        self.table.hashes += chunk.leaf_hashes
        self.table.kinds += chunk.kinds
        self.table.ids += chunk.ids
        self.findings.extend(chunk.findings)
        self.counts.update(chunk.counts)
        self.minutes.update(chunk.minutes)
        self.references.extend(chunk.references)

    def missing(self, index: int, source: str) -> None:
        """The source did not serve leaf ``index`` (gap or short page): nothing after it counts."""
        self.findings.append(
            F.fail(
                F.MISSING_ENTRY,
                self.member.id,
                f"{source} did not serve leaf {index} below its checkpoint size "
                f"{self.target.checkpoint.size}",
                index=index,
                source=source,
                checkpoint=self.target.note,
            )
        )

    def finish(self) -> bool:
        """Compare the rebuilt root with the target and resolve held fork claims; True if equal."""
        cp = self.target.checkpoint
        if self.size != cp.size:
            return False  # a missing entry was reported; the root cannot be rebuilt
        root = frontier_root(self.frontier)
        if root != cp.root:
            self.findings.append(
                F.fail(
                    F.ROOT_MISMATCH,
                    self.member.id,
                    f"leaves {self.start}..{cp.size - 1} from {self.target.source} do not rebuild"
                    f" the root of checkpoint {cp.size}",
                    source=self.target.source,
                    checkpoint=self.target.note,
                    start=self.start,
                    computed_root=base64.b64encode(root).decode(),
                )
            )
            return False
        for claim, computed in self._mismatches:
            self.findings.append(fork_finding(self.member.id, claim, self.target, computed))
        self.complete = True
        return True


def fork_finding(member_id: str, claim: RootClaim, target: Observed, computed: bytes) -> F.Finding:
    """Evidence that ``claim`` and ``target`` are two inconsistent views of one log."""
    code = F.INCONSISTENT_WITH_PREVIOUS_RUN if claim.previous_run else F.SPLIT_VIEW
    return F.fail(
        code,
        member_id,
        f"{claim.source} has a checkpoint of size {claim.size} whose root is not the root of"
        f" the first {claim.size} leaves of checkpoint {target.checkpoint.size} from"
        f" {target.source}",
        note_a=claim.note,
        source_a=claim.source,
        note_b=target.note,
        source_b=target.source,
        size=claim.size,
        root_a=base64.b64encode(claim.root).decode(),
        root_from_leaves_of_b=base64.b64encode(computed).decode(),
    )
