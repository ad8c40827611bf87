"""Verify one chunk of one origin's leaves: the auditor's hot path (pure, no I/O).

:func:`verify_chunk` is what worker processes run.  Ed25519 verification and the strict leaf
parse dominate an audit (both hold the GIL for most of their time), so chunks of a few
thousand leaves go to a process pool and come back as a compact :class:`ChunkResult`:
concatenated leaf hashes for the tree, one kind byte per leaf for reference checks, counters
for the report, and findings with the raw leaf as evidence.  The result never holds the
parsed entries, so pickling it back costs little.

Per leaf (spec/audit.md §3.3): the leaf is the canonical encoding of a signed entry
(``malformed_leaf``), signed by the origin's log key (``bad_entry_signature``), an entry *of*
that origin (``wrong_entry_origin``), and not refused by the origin's suspension: at or beyond
its ``suspended_size``, or created at or after its ``suspended_at``
(``entry_after_suspension``).  Each leaf also leaves the 8-byte digest of its entry id
(:func:`id_digest`) for the check that no id repeats in the log.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from federation.audit import findings as F
from federation.core.entries import Opinion, Retraction, Submission, leaf_hash, verify_leaf
from federation.core.keys import PublicKey
from federation.core.manifest import suspension_refusal
from federation.errors import VerificationError

INVALID_ID: Final = bytes(8)
"""The id digest of a leaf that is not a valid entry (it has no id to repeat)."""
_ONE: Final = (1).to_bytes(8, "little")

KIND_INVALID = 0
KIND_SUBMISSION = 1
KIND_RETRACTION = 2
KIND_OPINION = 3
DISPUTE_VERDICTS = frozenset({"false_positive", "disputed_label"})


@dataclass(frozen=True)
class ChunkTask:
    """Leaves ``start .. start+len(leaves)-1`` of one origin, and what verifying them needs."""

    member_id: str
    log_vkey: str
    suspended_at: int | None
    suspended_size: int | None
    start: int
    leaves: tuple[bytes, ...]


@dataclass(frozen=True)
class Reference:
    """A retraction's or opinion's pointer to another entry, checked once all logs are read."""

    index: int
    """Index of the referring entry in its own log."""
    kind: str
    """``retraction`` or ``opinion``."""
    target_origin: str
    target_index: int
    target_leaf_hash: str
    """Hex, as written in the entry."""
    verdict: str
    """The retraction reason or the opinion verdict."""
    leaf: bytes
    """The referring leaf (evidence if the reference dangles)."""


@dataclass(frozen=True)
class ChunkResult:
    """What one chunk contributes to an origin's audit."""

    start: int
    leaf_hashes: bytes
    """32 bytes per leaf, in order (malformed leaves are still hashed: the tree covers them)."""
    kinds: bytes
    """One ``KIND_*`` byte per leaf."""
    findings: tuple[F.Finding, ...]
    counts: dict[str, int]
    """``kind:<k>``, ``label:<category>``, ``reason:<r>`` counters."""
    minutes: dict[int, int]
    """Entries per minute of their ``created`` time (burst detection)."""
    references: tuple[Reference, ...] = field(default=())
    ids: bytes = b""
    """8 bytes per leaf: the digest of its entry id (zeros for a leaf that is no valid entry)."""

    @property
    def count(self) -> int:
        """Number of leaves in the chunk."""
        return len(self.kinds)


def id_digest(entry_id: str) -> bytes:
    """First 8 bytes of SHA-256 of an entry id: what the auditor keeps per leaf to find ids
    repeated anywhere in a log (never :data:`INVALID_ID`: such an id counts as 1)."""
    digest = hashlib.sha256(entry_id.encode()).digest()[:8]
    return _ONE if digest == INVALID_ID else digest


@functools.lru_cache(maxsize=64)
def _key(vkey: str) -> PublicKey:
    return PublicKey.parse(vkey)


def _leaf_finding(code: str, task: ChunkTask, index: int, leaf: bytes, msg: str) -> F.Finding:
    return F.fail(
        code,
        task.member_id,
        f"leaf {index}: {msg}",
        index=index,
        leaf=base64.b64encode(leaf).decode(),
        leaf_hash=leaf_hash(leaf).hex(),
        log_vkey=task.log_vkey,
    )


def _suspension_finding(
    task: ChunkTask, index: int, leaf: bytes, created: int, refusal: str
) -> F.Finding:
    """``entry_after_suspension``, with ``created`` and the suspension (``suspended_at``,
    ``suspended_size``: whichever the member has) as evidence."""
    bad = _leaf_finding(F.ENTRY_AFTER_SUSPENSION, task, index, leaf, refusal)
    rules = {"suspended_at": task.suspended_at, "suspended_size": task.suspended_size}
    evidence = {**bad.evidence, "created": created}
    evidence.update({k: v for k, v in rules.items() if v is not None})
    return bad.model_copy(update={"evidence": evidence})


def verify_chunk(task: ChunkTask) -> ChunkResult:
    """Verify every leaf of ``task``; never raises for a bad leaf (it becomes a finding)."""
    key = _key(task.log_vkey)
    hashes = bytearray()
    kinds = bytearray()
    found: list[F.Finding] = []
    counts: Counter[str] = Counter()
    minutes: Counter[int] = Counter()
    refs: list[Reference] = []
    ids = bytearray()
    sha256 = hashlib.sha256
    for offset, leaf in enumerate(task.leaves):
        index = task.start + offset
        hashes += sha256(b"\x00" + leaf).digest()
        try:
            signed = verify_leaf(leaf, key)
        except VerificationError as exc:
            code = F.BAD_ENTRY_SIGNATURE if exc.code == "bad_entry_signature" else F.MALFORMED_LEAF
            found.append(_leaf_finding(code, task, index, leaf, exc.message))
            kinds.append(KIND_INVALID)
            ids += INVALID_ID
            counts["kind:invalid"] += 1
            continue
        entry = signed.entry
        ids += id_digest(entry.id)
        if entry.origin != task.member_id:
            found.append(
                _leaf_finding(
                    F.WRONG_ENTRY_ORIGIN,
                    task,
                    index,
                    leaf,
                    f"entry of {entry.origin!r} in the log of {task.member_id!r}",
                )
            )
        refusal = suspension_refusal(task.suspended_at, task.suspended_size, index, entry.created)
        if refusal is not None:
            found.append(_suspension_finding(task, index, leaf, entry.created, refusal))
        counts[f"kind:{entry.kind}"] += 1
        minutes[entry.created // 60] += 1
        if isinstance(entry, Submission):
            kinds.append(KIND_SUBMISSION)
            for category in entry.labels.categories:
                counts[f"label:{category}"] += 1
        elif isinstance(entry, Retraction | Opinion):
            is_retraction = isinstance(entry, Retraction)
            kinds.append(KIND_RETRACTION if is_retraction else KIND_OPINION)
            verdict = entry.reason if isinstance(entry, Retraction) else entry.verdict
            if is_retraction:
                counts[f"reason:{verdict}"] += 1
            refs.append(
                Reference(
                    index,
                    entry.kind,
                    entry.target.origin,
                    entry.target.index,
                    entry.target.leaf_hash,
                    verdict,
                    leaf,
                )
            )
    return ChunkResult(
        task.start,
        bytes(hashes),
        bytes(kinds),
        tuple(found),
        dict(counts),
        dict(minutes),
        tuple(refs),
        bytes(ids),
    )
