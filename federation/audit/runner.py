"""One audit run over every origin in the manifest (spec/audit.md §3): I/O around the pure checks.

For each member: collect its checkpoints from every source, verify them and look for split
views; pick the largest as the target; check it against the previous run (rollback) and the
witness policy; prove smaller checkpoints below the resume point consistent with proofs; then
stream the leaves from the target's source through the worker pool and rebuild its root, and
look for entry ids that repeat anywhere in the log (this run's leaves against each other and
against the id digests earlier runs kept).  When every log is read, references are checked
across logs and the report is assembled.  The state advances only for origins that passed, so
a failure is reported again on every run.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

from federation.audit import findings as F
from federation.audit.checks import (
    Thresholds,
    check_consistency_proof,
    check_previous,
    check_witnesses,
    open_checkpoints,
    rate_anomalies,
    split_views,
)
from federation.audit.duplicates import duplicate_findings
from federation.audit.leaves import Reference
from federation.audit.origin import Observed, OriginAudit, RootClaim, fork_finding
from federation.audit.references import ReferenceChecker
from federation.audit.sources import LogSource
from federation.audit.state import AuditorState, OriginState, Progress, SavedReference
from federation.audit.stream import stream_leaves
from federation.core.manifest import Manifest, Member
from federation.core.merkle import EMPTY_ROOT
from federation.core.replication import frontier_root
from federation.errors import FederationError, PeerError


@dataclass(frozen=True)
class AuditOptions:
    """How to run."""

    full: bool = False
    """Re-verify every leaf even when the state file allows starting where the last run ended."""
    chunk: int = 2000
    """Leaves per worker task."""
    progress_every: int = 100_000
    """Record resumable progress in the state after about this many leaves."""
    thresholds: Thresholds = field(default_factory=Thresholds)
    """Anomaly thresholds."""


@dataclass
class _OriginRun:
    member: Member
    seen: list[Observed]
    findings: list[F.Finding]
    audit: OriginAudit | None = None
    hold: bool = False
    """The state must not advance although nothing failed: a check could not be completed
    (a possibly repeated entry id whose leaves no source served with a valid proof)."""


def _hexes(values: Sequence[bytes]) -> tuple[str, ...]:
    return tuple(v.hex() for v in values)


class Auditor:
    """Runs audits against a fixed manifest and set of sources."""

    def __init__(
        self,
        manifest: Manifest,
        sources: Sequence[LogSource],
        *,
        clock: Callable[[], float],
        executor: Executor | None = None,
        options: AuditOptions | None = None,
        save: Callable[[AuditorState], None] | None = None,
        on_leaves: Callable[[int], None] | None = None,
    ) -> None:
        self.manifest = manifest
        self.sources = list(sources)
        self.clock = clock
        self.executor = executor
        self.options = options or AuditOptions()
        self._save = save
        self._on_leaves = on_leaves

    async def _served(self, member: Member) -> tuple[list[tuple[str, str]], list[F.Finding]]:
        async def one(source: LogSource) -> list[tuple[str, str]] | F.Finding:
            try:
                return [(source.name, n) for n in await source.checkpoints(member.id)]
            except PeerError as exc:
                return F.anomaly(F.SOURCE_UNAVAILABLE, member.id, exc.message, source=source.name)

        served: list[tuple[str, str]] = []
        problems: list[F.Finding] = []
        for got in await asyncio.gather(*(one(s) for s in self.sources)):
            if isinstance(got, F.Finding):
                problems.append(got)
            else:
                served.extend(got)
        return served, problems

    def _source(self, name: str) -> LogSource:
        return next(s for s in self.sources if s.name == name)

    async def run(self, state: AuditorState) -> tuple[F.Report, AuditorState]:
        """Audit every member's log once; return the report and the state to save."""
        now = int(self.clock())
        runs: dict[str, _OriginRun] = {}
        origins = dict(state.origins)
        for member in sorted(self.manifest.members, key=lambda m: m.id):
            runs[member.id] = await self._audit_origin(member, state, origins, now)
        refs = ReferenceChecker(self.manifest, runs_targets(runs), origins)
        for run in runs.values():
            if run.audit is not None:
                run.findings.extend(await refs.check(run.member.id, run.audit, self.sources))
        disputes = refs.disputes()
        reports = []
        for member_id, run in runs.items():
            reports.append(self._report(run, origins.get(member_id), disputes.get(member_id, 0)))
            if (
                run.audit is not None
                and run.audit.complete
                and not run.hold
                and not any(f.level == "fail" for f in run.findings)
            ):
                origins[member_id] = _completed(run.audit)
                ids = bytes(run.audit.table.ids)
                state = state.with_id_digests(member_id, run.audit.start, ids)
        origin_reports = tuple(reports)
        verdict = F.verdict_of(origin_reports, ())
        report = F.Report(
            federation=self.manifest.federation,
            manifest_version=self.manifest.version,
            generated_at=now,
            sources=tuple(s.name for s in self.sources),
            verdict="fail" if verdict == "fail" else "pass",
            origins=origin_reports,
            findings=(),
        )
        return report, state.model_copy(update={"origins": origins})

    async def _audit_origin(
        self, member: Member, state: AuditorState, origins: dict[str, OriginState], now: int
    ) -> _OriginRun:
        served, problems = await self._served(member)
        valid, bad = open_checkpoints(member, served)
        run = _OriginRun(member, valid, [*problems, *bad, *split_views(member.id, valid)])
        if not valid:
            return run
        target = max(valid, key=lambda o: o.checkpoint.size)
        prev = origins.get(member.id)
        prev_claim = (
            RootClaim(prev.size, bytes.fromhex(prev.root), prev.note, "previous run", True)
            if prev is not None
            else None
        )
        run.findings += check_previous(member.id, prev_claim, target)
        if self.manifest.policy.witness_quorum > 0:
            run.findings += check_witnesses(self.manifest, target, now)
        if any(f.code == F.CHECKPOINT_ROLLBACK for f in run.findings):
            return run
        start, frontier = 0, tuple[bytes, ...]()
        counts: dict[str, int] = {}
        saved: tuple[SavedReference, ...] = ()
        earlier = b""
        if prev is not None and not self.options.full:
            start, frontier, counts = (
                prev.size,
                tuple(map(bytes.fromhex, prev.frontier)),
                prev.counts,
            )
            progress = prev.progress
            if progress is not None and start < progress.size <= target.checkpoint.size:
                start, frontier = progress.size, tuple(map(bytes.fromhex, progress.frontier))
                counts, saved = progress.counts, progress.references
            held = state.id_digests(member.id, start)
            if held is None:
                # No id digests of the leaves verified before (a state from an older auditor,
                # or one whose id file is gone): read this log in full once to have them.
                start, frontier, counts, saved = 0, (), {}, ()
            else:
                earlier = held
        claims = [
            RootClaim(o.checkpoint.size, o.checkpoint.root, o.note, o.source)
            for o in valid
            if o is not target and o.checkpoint.size != target.checkpoint.size
        ]
        if prev_claim is not None and prev_claim.size > 0:
            claims.append(prev_claim)
        audit = OriginAudit(
            member, target, start=start, frontier=frontier, claims=claims, counts=counts
        )
        audit.references.extend(_restore(r) for r in saved)
        early = await self._early_claims(member, claims, start, frontier, target)
        run.findings += early
        if any(f.code == F.INCONSISTENT_WITH_PREVIOUS_RUN for f in early):
            return run  # the new leaves cannot extend a tree the log no longer has
        await self._stream(audit, target, state, origins)
        if audit.finish():
            sources = [self._source(target.source)]
            sources += [s for s in self.sources if s.name != target.source]
            repeated = await duplicate_findings(audit, earlier, sources)
            run.hold = any(f.code == F.SOURCE_UNAVAILABLE for f in repeated)
            if (run.hold or any(f.level == "fail" for f in repeated)) and member.id in origins:
                # A resume would start past leaves whose ids repeat: start over next time.
                origins[member.id] = origins[member.id].model_copy(update={"progress": None})
            audit.findings += repeated
        run.findings += audit.findings
        run.audit = audit
        return run

    async def _early_claims(
        self,
        member: Member,
        claims: list[RootClaim],
        start: int,
        frontier: tuple[bytes, ...],
        target: Observed,
    ) -> list[F.Finding]:
        """Claims at or below the resume point: compare with the frontier or prove consistency."""
        found: list[F.Finding] = []
        for claim in claims:
            if claim.size == 0 or claim.size > start:
                continue
            if claim.size == start and not (claim.previous_run and start < target.checkpoint.size):
                # The frontier is the previous run's tree, so only another source's checkpoint
                # of this size can disagree with it; the previous run's needs a proof instead.
                computed = frontier_root(frontier)
                if computed != claim.root:
                    found.append(fork_finding(member.id, claim, target, computed))
                continue
            try:
                proof = await self._source(target.source).consistency(
                    member.id, claim.size, target.checkpoint.size
                )
            except FederationError as exc:
                found.append(
                    F.anomaly(F.SOURCE_UNAVAILABLE, member.id, exc.message, source=target.source)
                )
                continue
            found += check_consistency_proof(member.id, claim, target, proof)
        return found

    async def _stream(
        self,
        audit: OriginAudit,
        target: Observed,
        state: AuditorState,
        origins: dict[str, OriginState],
    ) -> None:
        every = self.options.progress_every
        mark = audit.size + every

        def on_chunk(n: int) -> None:
            nonlocal mark
            if self._on_leaves is not None:
                self._on_leaves(n)
            if self._save is not None and audit.size >= mark and not audit.findings:
                mark = audit.size + every
                prev = origins.get(audit.member.id) or OriginState(
                    size=0, root=EMPTY_ROOT.hex(), frontier=()
                )
                origins[audit.member.id] = prev.model_copy(update={"progress": _progress(audit)})
                ids = bytes(audit.table.ids)
                saving = state.with_id_digests(audit.member.id, audit.start, ids)
                self._save(saving.model_copy(update={"origins": origins}))

        await stream_leaves(
            audit,
            self._source(target.source),
            executor=self.executor,
            chunk=self.options.chunk,
            on_chunk=on_chunk,
        )

    def _report(self, run: _OriginRun, prev: OriginState | None, disputes: int) -> F.OriginReport:
        audit = run.audit
        counts = dict(audit.counts) if audit is not None else dict(prev.counts if prev else {})
        minutes = dict(audit.minutes) if audit is not None else {}
        findings = list(run.findings)
        findings += rate_anomalies(
            run.member.id, counts, minutes, disputes, self.options.thresholds
        )
        size = (
            audit.target.checkpoint.size
            if audit is not None and audit.complete
            else (prev.size if prev else 0)
        )
        return F.OriginReport(
            member_id=run.member.id,
            log_origin=run.member.log_origin,
            size=size,
            verified_from=audit.start if audit is not None else size,
            checkpoints=tuple(
                F.CheckpointSeen(
                    source=o.source, size=o.checkpoint.size, root=o.checkpoint.root.hex()
                )
                for o in run.seen
            ),
            entries_by_kind=_prefixed(counts, "kind:"),
            entries_by_label=_prefixed(counts, "label:"),
            retractions_by_reason=_prefixed(counts, "reason:"),
            disputes=disputes,
            findings=tuple(findings),
        )


def runs_targets(runs: dict[str, _OriginRun]) -> dict[str, OriginAudit]:
    """The origin audits that ran (for reference checks)."""
    return {k: r.audit for k, r in runs.items() if r.audit is not None}


def _prefixed(counts: dict[str, int], prefix: str) -> dict[str, int]:
    return {k[len(prefix) :]: v for k, v in sorted(counts.items()) if k.startswith(prefix)}


def _progress(audit: OriginAudit) -> Progress:
    return Progress(
        size=audit.size,
        frontier=_hexes(audit.frontier),
        counts=dict(audit.counts),
        references=tuple(_save_ref(r) for r in audit.references),
    )


def _save_ref(ref: Reference) -> SavedReference:
    return SavedReference(
        index=ref.index,
        kind=ref.kind,
        target_origin=ref.target_origin,
        target_index=ref.target_index,
        target_leaf_hash=ref.target_leaf_hash,
        verdict=ref.verdict,
        leaf=base64.b64encode(ref.leaf).decode(),
    )


def _restore(saved: SavedReference) -> Reference:
    return Reference(
        saved.index,
        saved.kind,
        saved.target_origin,
        saved.target_index,
        saved.target_leaf_hash,
        saved.verdict,
        base64.b64decode(saved.leaf),
    )


def _completed(audit: OriginAudit) -> OriginState:
    cp = audit.target.checkpoint
    return OriginState(
        size=cp.size,
        root=cp.root.hex(),
        frontier=_hexes(audit.frontier),
        note=audit.target.note,
        counts=dict(audit.counts),
    )
