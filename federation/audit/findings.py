"""Audit findings and the report (spec/audit.md §4–§5): stable codes, raw evidence, verdict.

A finding is a claim a third party must be able to check without trusting the auditor, so each
carries the raw material — signed notes, leaf bytes (base64), proofs — not only a message.
Findings of level ``fail`` make the verdict ``fail``; ``anomaly`` findings are reported for a
human to look at (bursts, high retraction or dispute rates) and never fail an audit.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

BAD_CHECKPOINT_SIGNATURE: Final = "bad_checkpoint_signature"
MALFORMED_LEAF: Final = "malformed_leaf"
BAD_ENTRY_SIGNATURE: Final = "bad_entry_signature"
WRONG_ENTRY_ORIGIN: Final = "wrong_entry_origin"
ENTRY_AFTER_SUSPENSION: Final = "entry_after_suspension"
DUPLICATE_ENTRY_ID: Final = "duplicate_entry_id"
MISSING_ENTRY: Final = "missing_entry"
ROOT_MISMATCH: Final = "root_mismatch"
CHECKPOINT_ROLLBACK: Final = "checkpoint_rollback"
INCONSISTENT_WITH_PREVIOUS_RUN: Final = "inconsistent_with_previous_run"
SPLIT_VIEW: Final = "split_view"
WITNESS_QUORUM_NOT_MET: Final = "witness_quorum_not_met"
DANGLING_REFERENCE: Final = "dangling_reference"
SOURCE_UNAVAILABLE: Final = "source_unavailable"
BURST: Final = "burst"
HIGH_RETRACTION_RATE: Final = "high_retraction_rate"
HIGH_DISPUTE_RATE: Final = "high_dispute_rate"

FAIL_CODES: Final = (
    BAD_CHECKPOINT_SIGNATURE,
    MALFORMED_LEAF,
    BAD_ENTRY_SIGNATURE,
    WRONG_ENTRY_ORIGIN,
    ENTRY_AFTER_SUSPENSION,
    DUPLICATE_ENTRY_ID,
    MISSING_ENTRY,
    ROOT_MISMATCH,
    CHECKPOINT_ROLLBACK,
    INCONSISTENT_WITH_PREVIOUS_RUN,
    SPLIT_VIEW,
    WITNESS_QUORUM_NOT_MET,
    DANGLING_REFERENCE,
)
ANOMALY_CODES: Final = (SOURCE_UNAVAILABLE, BURST, HIGH_RETRACTION_RATE, HIGH_DISPUTE_RATE)
ALL_CODES: Final = FAIL_CODES + ANOMALY_CODES

_MODEL = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class Finding(BaseModel):
    """One thing the auditor found, with what a third party needs to check it."""

    model_config = _MODEL

    code: str
    """Stable machine code (spec/audit.md §5)."""
    level: Literal["fail", "anomaly"]
    """``fail`` breaks the verdict; ``anomaly`` is for a human to look at."""
    origin: str | None
    """Member id of the log concerned, if any."""
    message: str
    """One human sentence."""
    evidence: dict[str, Any] = Field(default_factory=dict)
    """Raw material: notes as text, leaves and hashes as base64/hex, proofs as base64 lists."""


def fail(code: str, origin: str | None, message: str, **evidence: Any) -> Finding:
    """A finding that fails the audit."""
    return Finding(code=code, level="fail", origin=origin, message=message, evidence=evidence)


def anomaly(code: str, origin: str | None, message: str, **evidence: Any) -> Finding:
    """A finding reported for review that does not fail the audit."""
    return Finding(code=code, level="anomaly", origin=origin, message=message, evidence=evidence)


class CheckpointSeen(BaseModel):
    """A checkpoint of one origin as one source served it."""

    model_config = _MODEL

    source: str
    """Node URL or bundle path it came from."""
    size: int
    """Tree size it claims."""
    root: str
    """Root hash, hex."""


class OriginReport(BaseModel):
    """What the auditor verified about one member's log."""

    model_config = _MODEL

    member_id: str
    """Member id of the log."""
    log_origin: str
    """Checkpoint origin line."""
    size: int
    """Size of the checkpoint verified up to (0 when none could be verified)."""
    verified_from: int
    """First index verified in this run (> 0 when resuming from an earlier run)."""
    checkpoints: tuple[CheckpointSeen, ...]
    """Every validly signed checkpoint seen, by source."""
    entries_by_kind: dict[str, int]
    """Entries of each kind (cumulative over runs)."""
    entries_by_label: dict[str, int]
    """Submissions per label category (cumulative)."""
    retractions_by_reason: dict[str, int]
    """Retractions per reason (cumulative)."""
    disputes: int
    """``false_positive`` or ``disputed_label`` opinions by anyone about this log's entries."""
    findings: tuple[Finding, ...]
    """Failures and anomalies about this log."""

    @property
    def passed(self) -> bool:
        """Whether no finding of level ``fail`` concerns this log."""
        return all(f.level != "fail" for f in self.findings)


class Report(BaseModel):
    """The whole audit: one entry per origin, global findings and the verdict."""

    model_config = _MODEL

    federation: str
    """Federation name from the manifest."""
    manifest_version: int
    """Manifest version audited against."""
    generated_at: int
    """Unix seconds (the injected clock)."""
    sources: tuple[str, ...]
    """Node URLs or the bundle path audited."""
    verdict: Literal["pass", "fail"]
    """``fail`` iff any finding has level ``fail``."""
    origins: tuple[OriginReport, ...]
    """Per-origin results, ordered by member id."""
    findings: tuple[Finding, ...]
    """Findings not tied to one origin (e.g. a reference to an unknown member's log)."""


def verdict_of(origins: tuple[OriginReport, ...], findings: tuple[Finding, ...]) -> str:
    """``fail`` iff any finding anywhere has level ``fail``."""
    every = [f for o in origins for f in o.findings] + list(findings)
    return "fail" if any(f.level == "fail" for f in every) else "pass"
