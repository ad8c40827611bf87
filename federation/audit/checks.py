"""Checks on checkpoints, references and rates (pure, no I/O; spec/audit.md §3).

Checkpoints of one origin come from every node audited.  Each must carry a valid signature by
the origin's log key (``bad_checkpoint_signature``); two of the same size with different roots
are a proven ``split_view``; the largest must not be smaller than what the previous run
verified (``checkpoint_rollback``) and must meet the witness quorum of the policy.  Checkpoints
of different sizes are compared while the leaves stream (:mod:`.origin`) or, below the point
an incremental run starts from, with a consistency proof (:func:`check_consistency_proof`).
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from federation.audit import findings as F
from federation.audit.leaves import DISPUTE_VERDICTS, KIND_SUBMISSION, Reference
from federation.audit.origin import LeafTable, Observed, RootClaim
from federation.core.manifest import Manifest, Member
from federation.core.merkle import verify_consistency
from federation.core.note import SignedNote
from federation.core.replication import check_witness_quorum, open_member_checkpoint
from federation.errors import VerificationError


@dataclass(frozen=True)
class Thresholds:
    """When rates become anomalies (reported, never failing)."""

    burst_per_minute: int = 1000
    """More entries than this created within one minute is a burst."""
    retraction_rate: float = 0.10
    """Retractions per submission above this is high."""
    dispute_rate: float = 0.10
    """Disputing opinions per submission above this is high."""
    min_submissions: int = 20
    """Rates are not judged on fewer submissions than this."""


def open_checkpoints(
    member: Member, served: Sequence[tuple[str, str]]
) -> tuple[list[Observed], list[F.Finding]]:
    """Verify each ``(source, note)``; return the valid ones and a finding per invalid one."""
    valid: list[Observed] = []
    found: list[F.Finding] = []
    for source, note in served:
        try:
            cp, _ = open_member_checkpoint(member, note)
        except VerificationError as exc:
            found.append(
                F.fail(
                    F.BAD_CHECKPOINT_SIGNATURE,
                    member.id,
                    f"checkpoint from {source} does not verify: {exc.message} ({exc.code})",
                    source=source,
                    note=note,
                    log_vkey=member.log_vkey,
                    reason=exc.code,
                )
            )
            continue
        valid.append(Observed(source, note, cp))
    return valid, found


def split_views(member_id: str, valid: Sequence[Observed]) -> list[F.Finding]:
    """Two checkpoints of one size with different roots: the notes alone prove the fork."""
    first: dict[int, Observed] = {}
    found: list[F.Finding] = []
    for obs in valid:
        seen = first.setdefault(obs.checkpoint.size, obs)
        if seen.checkpoint.root != obs.checkpoint.root:
            found.append(
                F.fail(
                    F.SPLIT_VIEW,
                    member_id,
                    f"{seen.source} and {obs.source} serve different checkpoints of size"
                    f" {obs.checkpoint.size}",
                    note_a=seen.note,
                    source_a=seen.source,
                    note_b=obs.note,
                    source_b=obs.source,
                    size=obs.checkpoint.size,
                )
            )
    return found


def check_previous(member_id: str, previous: RootClaim | None, target: Observed) -> list[F.Finding]:
    """The largest checkpoint seen must not be behind, or differ at, the last verified one."""
    if previous is None:
        return []
    cp = target.checkpoint
    if cp.size < previous.size:
        return [
            F.fail(
                F.CHECKPOINT_ROLLBACK,
                member_id,
                f"the largest checkpoint seen has size {cp.size}, smaller than the size"
                f" {previous.size} verified on an earlier run",
                previous_note=previous.note,
                note=target.note,
                source=target.source,
            )
        ]
    if cp.size == previous.size and cp.root != previous.root:
        return [
            F.fail(
                F.INCONSISTENT_WITH_PREVIOUS_RUN,
                member_id,
                f"checkpoint of size {cp.size} differs from the one verified on an earlier run",
                previous_note=previous.note,
                note=target.note,
                source=target.source,
            )
        ]
    return []


def check_witnesses(manifest: Manifest, target: Observed, now: int) -> list[F.Finding]:
    """The policy's witness quorum on the checkpoint audited up to."""
    try:
        check_witness_quorum(SignedNote.parse(target.note), manifest, now)
    except VerificationError as exc:
        return [
            F.fail(
                F.WITNESS_QUORUM_NOT_MET,
                _member_id(manifest, target),
                exc.message,
                note=target.note,
                quorum=manifest.policy.witness_quorum,
                reason=exc.code,
            )
        ]
    return []


def _member_id(manifest: Manifest, target: Observed) -> str | None:
    member = manifest.member_by_origin(target.checkpoint.origin)
    return member.id if member else None


def check_consistency_proof(
    member_id: str, older: RootClaim, target: Observed, proof: Sequence[bytes]
) -> list[F.Finding]:
    """A checkpoint below this run's start must be proven a prefix of the target."""
    cp = target.checkpoint
    try:
        verify_consistency(older.size, cp.size, proof, older.root, cp.root)
    except VerificationError as exc:
        code = F.INCONSISTENT_WITH_PREVIOUS_RUN if older.previous_run else F.SPLIT_VIEW
        return [
            F.fail(
                code,
                member_id,
                f"checkpoint {older.size} from {older.source} is not proven consistent with"
                f" checkpoint {cp.size} from {target.source}: {exc.message}",
                note_a=older.note,
                source_a=older.source,
                note_b=target.note,
                source_b=target.source,
                proof=[base64.b64encode(p).decode() for p in proof],
                proof_source=target.source,
            )
        ]
    return []


def _dangling(ref: Reference, origin: str, why: str) -> F.Finding:
    return F.fail(
        F.DANGLING_REFERENCE,
        origin,
        f"{ref.kind} at index {ref.index} refers to {ref.target_origin}#{ref.target_index}: {why}",
        index=ref.index,
        leaf=base64.b64encode(ref.leaf).decode(),
        target_origin=ref.target_origin,
        target_index=ref.target_index,
        target_leaf_hash=ref.target_leaf_hash,
    )


def check_references(
    origin: str,
    refs: Iterable[Reference],
    sizes: Mapping[str, int],
    tables: Mapping[str, LeafTable],
) -> tuple[list[F.Finding], list[Reference]]:
    """Findings for references that dangle, and the ones this run cannot decide alone.

    ``sizes`` holds each member's verified size; ``tables`` the leaves verified in this run.
    A target below a table's ``base`` was verified on an earlier run and is returned as
    unresolved so the caller can fetch it with an inclusion proof.
    """
    found: list[F.Finding] = []
    unresolved: list[Reference] = []
    for ref in refs:
        size = sizes.get(ref.target_origin)
        if size is None:
            found.append(_dangling(ref, origin, "no verified log of that member"))
            continue
        if ref.target_index >= size:
            found.append(_dangling(ref, origin, f"beyond its verified size {size}"))
            continue
        table = tables.get(ref.target_origin)
        held = table.get(ref.target_index) if table is not None else None
        if held is None:
            unresolved.append(ref)
            continue
        digest, kind = held
        if digest.hex() != ref.target_leaf_hash:
            found.append(_dangling(ref, origin, f"its leaf hash is {digest.hex()}"))
        elif kind != KIND_SUBMISSION:
            found.append(_dangling(ref, origin, "the target is not a valid submission"))
    return found, unresolved


def disputes_by_target(refs_by_origin: Mapping[str, Iterable[Reference]]) -> Counter[str]:
    """Disputing opinions per target member (whoever gave them)."""
    out: Counter[str] = Counter()
    for refs in refs_by_origin.values():
        for ref in refs:
            if ref.kind == "opinion" and ref.verdict in DISPUTE_VERDICTS:
                out[ref.target_origin] += 1
    return out


def rate_anomalies(
    member_id: str,
    counts: Mapping[str, int],
    minutes: Mapping[int, int],
    disputes: int,
    limits: Thresholds,
) -> list[F.Finding]:
    """Bursts and high retraction or dispute rates (anomalies, never failures)."""
    found: list[F.Finding] = []
    if minutes:
        minute, peak = max(minutes.items(), key=lambda kv: (kv[1], -kv[0]))
        if peak > limits.burst_per_minute:
            found.append(
                F.anomaly(
                    F.BURST,
                    member_id,
                    f"{peak} entries created within one minute",
                    minute_start=minute * 60,
                    entries=peak,
                    limit=limits.burst_per_minute,
                )
            )
    submissions = counts.get("kind:submission", 0)
    if submissions >= limits.min_submissions:
        retractions = counts.get("kind:retraction", 0)
        for code, n, limit, what in (
            (F.HIGH_RETRACTION_RATE, retractions, limits.retraction_rate, "retractions"),
            (F.HIGH_DISPUTE_RATE, disputes, limits.dispute_rate, "disputing opinions"),
        ):
            if n / submissions > limit:
                found.append(
                    F.anomaly(
                        code,
                        member_id,
                        f"{n} {what} for {submissions} submissions",
                        count=n,
                        submissions=submissions,
                        limit=limit,
                    )
                )
    return found
