"""What a node MUST check before it applies another member's log entries (spec/sync.md §3).

Pure and synchronous (it lives in ``core`` because storage and sync both need it and it does no
I/O): the replicator fetches a checkpoint, the consistency proof from the last state it trusts,
and the leaves after it, then hands them here.  Nothing is stored unless :func:`verify_batch`
returns; it raises :class:`~federation.errors.VerificationError` with one stable code per
failure, in the order of the spec, so an operator sees the *first* thing wrong with a batch.

The root check costs O(batch + log n): :class:`TrustedState` carries the compact range
(``frontier``) of the trusted tree — the perfect-subtree hashes tiling ``[0, size)``, largest
first — and the new leaves are folded onto it, exactly as a log appends.

A batch either ends at the checkpoint's size (one root comparison authenticates every leaf) or
is a *chunk* ending at ``end`` < size: then the root at ``end`` computed from the leaves must be
proven a prefix of the signed checkpoint by a consistency proof from ``end`` to its size
(spec/sync.md §3.1).  Chunks let a node far behind catch up in bounded memory without ever
trusting an unsigned tree head: each chunk is tied to the signed checkpoint by its own proof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Final

from federation.core.checkpoint import Checkpoint, checkpoint_cosignatures, open_checkpoint
from federation.core.entries import SignedEntry, leaf_hash, verify_leaf
from federation.core.keys import PublicKey
from federation.core.manifest import Manifest, Member, Role
from federation.core.merkle import EMPTY_ROOT, NODE_PREFIX, verify_consistency
from federation.core.note import SignedNote
from federation.errors import FederationError, VerificationError

CHECKPOINT_ROLLBACK: Final = "checkpoint_rollback"
INCONSISTENT_CHECKPOINT: Final = "inconsistent_checkpoint"
LEAVES_NOT_CONTIGUOUS: Final = "leaves_not_contiguous"
DUPLICATE_ENTRY_ID: Final = "duplicate_entry_id"
WRONG_ENTRY_ORIGIN: Final = "wrong_entry_origin"
BAD_ENTRY_SIGNATURE: Final = "bad_entry_signature"
MEMBER_SUSPENDED: Final = "member_suspended"
ROOT_MISMATCH: Final = "root_mismatch"
CHUNK_NOT_PROVEN: Final = "chunk_not_proven"
WITNESS_QUORUM_NOT_MET: Final = "witness_quorum_not_met"
COSIGNATURE_SKEW: Final = 60
"""Seconds a cosignature's timestamp may lie in our future and still count (clock skew)."""

_sha256 = hashlib.sha256
_POOL_SLICES = 4
"""Slices of a batch checked at once on a pool (a few per core evens out uneven slices)."""
_MIN_SLICE = 64
"""Fewer leaves than this per slice are checked in one go (thread hand-off would dominate)."""


@dataclass(frozen=True)
class TrustedState:
    """The last verified state of a mirrored log: where the next batch must start."""

    size: int
    """Tree size of the trusted checkpoint."""
    root: bytes
    """Its root hash."""
    frontier: tuple[bytes, ...]
    """Perfect-subtree hashes tiling ``[0, size)``, largest first (one per set bit of size)."""
    note: str | None = None
    """The signed checkpoint note at ``size`` (kept as split-view evidence), if stored."""


@dataclass(frozen=True)
class VerifiedLeaf:
    """One leaf that passed every check, with what storage needs to keep it."""

    index: int
    leaf: bytes
    leaf_hash: bytes
    signed: SignedEntry


@dataclass(frozen=True)
class VerifiedBatch:
    """A checkpoint and the leaves that extend the trusted tree exactly to it."""

    checkpoint: Checkpoint
    """The verified checkpoint the batch ends at."""
    note: str
    """Its signed note text (cosignatures included), stored as received."""
    start: int
    """The trusted size the batch extends (index of its first leaf)."""
    leaves: tuple[VerifiedLeaf, ...]
    """Leaves ``start .. end - 1`` in order (empty when already up to date)."""
    end: int
    """Tree size after applying the batch: the checkpoint's size, or less for a chunk."""
    root: bytes
    """Root of the tree of ``end`` leaves (the checkpoint's root when complete)."""

    @property
    def size(self) -> int:
        """Tree size after applying the batch."""
        return self.end

    @property
    def complete(self) -> bool:
        """Whether the batch reaches the checkpoint (else it is a proven chunk of it)."""
        return self.end == self.checkpoint.size


class InconsistentCheckpoint(VerificationError):
    """Two validly signed checkpoints of one log that could not be shown to be consistent.

    Carries both notes so the caller can store them as evidence.  ``proven`` is True when the
    two notes alone demonstrate the fork (same size, different roots; or a smaller checkpoint
    whose root differs from our verified tree at that size); False when only a served
    consistency proof failed to connect them — which a relay can cause by serving garbage, so
    the replicator treats that case as evidence only when the origin itself served the proof.
    """

    code = INCONSISTENT_CHECKPOINT

    def __init__(
        self,
        message: str,
        *,
        trusted_note: str | None,
        new_note: str,
        proof: Sequence[bytes] = (),
        proven: bool,
    ) -> None:
        super().__init__(message)
        self.trusted_note = trusted_note
        self.new_note = new_note
        self.proof = tuple(proof)
        self.proven = proven


# --- compact range -------------------------------------------------------------------------


def extend_frontier(
    size: int, frontier: Sequence[bytes], leaf_hashes: Sequence[bytes]
) -> tuple[int, tuple[bytes, ...]]:
    """Append leaf hashes to the compact range of a tree of ``size``; return the new pair.

    Each trailing 1 bit of the size is a perfect subtree that the next leaf completes.
    """
    stack = list(frontier)
    if len(stack) != size.bit_count():
        raise VerificationError(
            f"frontier of {len(stack)} hashes cannot tile a tree of {size} leaves",
            code="malformed_frontier",
        )
    n = size
    for h in leaf_hashes:
        m = n
        while m & 1:
            h = _sha256(NODE_PREFIX + stack.pop() + h).digest()
            m >>= 1
        stack.append(h)
        n += 1
    return n, tuple(stack)


def frontier_root(frontier: Sequence[bytes]) -> bytes:
    """MTH of the tree a compact range tiles (right fold; SHA-256("") when empty)."""
    if not frontier:
        return EMPTY_ROOT
    r = frontier[-1]
    for h in reversed(frontier[:-1]):
        r = _sha256(NODE_PREFIX + h + r).digest()
    return r


# --- the checks ----------------------------------------------------------------------------


def open_member_checkpoint(member: Member, note: str) -> tuple[Checkpoint, SignedNote]:
    """Verify ``note`` is a checkpoint signed by ``member``'s log key for its log origin."""
    signed = SignedNote.parse(note)
    return open_checkpoint(signed, member.log_key(), expected_origin=member.log_origin), signed


def check_witness_quorum(signed: SignedNote, manifest: Manifest, now: int) -> None:
    """Require ``policy.witness_quorum`` distinct active witnesses to have cosigned ``signed``.

    Cosignatures dated more than :data:`COSIGNATURE_SKEW` seconds in our future do not count;
    one that claims a listed witness but fails to verify rejects the note (``bad_cosignature``).
    """
    quorum = manifest.policy.witness_quorum
    if quorum <= 0:
        return
    witnesses: list[PublicKey] = []
    for m in manifest.members:
        key = m.witness_key()
        if key is not None and Role.WITNESS in m.roles and manifest.is_active(m.id, now):
            witnesses.append(key)
    times = checkpoint_cosignatures(signed, witnesses)
    valid = [name for name, t in times.items() if t <= now + COSIGNATURE_SKEW]
    if len(valid) < quorum:
        raise VerificationError(
            f"checkpoint has {len(valid)} valid witness cosignatures, policy needs {quorum}",
            code=WITNESS_QUORUM_NOT_MET,
        )


def _check_consistent(
    trusted: TrustedState, cp: Checkpoint, note: str, proof: Sequence[bytes]
) -> None:
    if cp.size == trusted.size:
        if cp.root != trusted.root:
            raise InconsistentCheckpoint(
                f"two signed checkpoints of size {cp.size} with different roots",
                trusted_note=trusted.note,
                new_note=note,
                proven=True,
            )
        return
    if trusted.size == 0:
        return  # nothing to be consistent with; the root check covers every leaf
    try:
        verify_consistency(trusted.size, cp.size, proof, trusted.root, cp.root)
    except VerificationError as exc:
        raise InconsistentCheckpoint(
            f"checkpoint {cp.size} is not proven consistent with trusted size {trusted.size}:"
            f" {exc.message} ({exc.code})",
            trusted_note=trusted.note,
            new_note=note,
            proof=proof,
            proven=False,
        ) from None


def _check_leaf(
    member: Member, key: PublicKey, owner: Member | None, index: int, data: bytes
) -> SignedEntry:
    """One leaf's checks; ``owner`` is the log's member in the manifest in force (None: not
    listed there, so every entry is refused)."""
    try:
        signed = verify_leaf(data, key)
    except VerificationError as exc:
        raise VerificationError(
            f"leaf {index}: {exc.message}", code=exc.code, field=f"leaves[{index}]"
        ) from None
    entry = signed.entry
    if entry.origin != member.id:
        raise VerificationError(
            f"leaf {index} is an entry of {entry.origin!r}, not of log owner {member.id!r}",
            code=WRONG_ENTRY_ORIGIN,
            field=f"leaves[{index}]",
        )
    refusal = (
        "not a member of the manifest in force"
        if owner is None
        else owner.entry_refusal(index, entry.created)
    )
    if refusal is not None:
        raise VerificationError(
            f"leaf {index} of {member.id!r} is refused: {refusal}",
            code=MEMBER_SUSPENDED,
            field=f"leaves[{index}]",
        )
    return signed


_SliceResult = tuple[list[SignedEntry], VerificationError | None]


def _check_slice(
    member: Member, key: PublicKey, owner: Member | None, leaves: Sequence[tuple[int, bytes]]
) -> _SliceResult:
    """The per-leaf checks of a run of leaves, in order, up to the first failure (returned,
    not raised, so the caller can still report an earlier leaf's duplicate id first)."""
    out: list[SignedEntry] = []
    for index, data in leaves:
        try:
            out.append(_check_leaf(member, key, owner, index, data))
        except VerificationError as exc:
            return out, exc
    return out, None


def _slices(leaves: Sequence[tuple[int, bytes]], parts: int) -> list[Sequence[tuple[int, bytes]]]:
    step = -(-len(leaves) // parts) if leaves else 1
    return [leaves[at : at + step] for at in range(0, len(leaves), step)] or [leaves]


def verify_batch(
    member: Member,
    trusted: TrustedState | None,
    checkpoint_note: str,
    leaves: Sequence[tuple[int, bytes]],
    consistency_proof: Sequence[bytes],
    *,
    manifest: Manifest,
    now: int,
    end: int | None = None,
    end_proof: Sequence[bytes] = (),
    pool: Executor | None = None,
) -> VerifiedBatch:
    """Check a fetched checkpoint and the leaves up to it (or up to ``end``); return them.

    In order (spec/sync.md §3): the checkpoint is signed by ``member.log_vkey`` for
    ``member.log_origin``; the witness quorum, if policy sets one; it is not smaller than the
    trusted size (``checkpoint_rollback``); it is consistent with the trusted checkpoint
    (:class:`InconsistentCheckpoint`); the leaves are exactly ``trusted.size ..
    checkpoint.size - 1`` (``leaves_not_contiguous``); each leaf is canonical, by this member,
    validly signed, and not refused by a suspension (at or beyond ``suspended_size``, or
    created at or after ``suspended_at``: ``member_suspended``), and no entry id repeats; and the
    leaves extend the trusted tree to exactly the checkpoint's root (``root_mismatch``).

    With ``end`` below the checkpoint's size the leaves must be ``trusted.size .. end - 1`` and
    ``end_proof`` must prove the tree they build consistent with the checkpoint
    (``chunk_not_proven``).  A chunk never proves a fork: only the served proof is at fault.

    With a ``pool`` (threads: libsodium releases the GIL while it verifies) the per-leaf checks
    run in a few slices at once; the checks, and which failure is reported first, are the same.
    """
    trusted = trusted or TrustedState(0, EMPTY_ROOT, ())
    cp, signed_note = open_member_checkpoint(member, checkpoint_note)
    check_witness_quorum(signed_note, manifest, now)
    if cp.size < trusted.size:
        raise VerificationError(
            f"checkpoint size {cp.size} is smaller than the trusted size {trusted.size}",
            code=CHECKPOINT_ROLLBACK,
        )
    _check_consistent(trusted, cp, checkpoint_note, consistency_proof)
    stop = cp.size if end is None else end
    if not trusted.size <= stop <= cp.size:
        raise VerificationError(
            f"chunk end {stop} is outside {trusted.size}..{cp.size}", code=LEAVES_NOT_CONTIGUOUS
        )
    want = range(trusted.size, stop)
    got = [index for index, _ in leaves]
    if len(got) != len(want) or any(g != w for g, w in zip(got, want, strict=False)):
        first = next((w for g, w in zip(got, want, strict=False) if g != w), None)
        raise VerificationError(
            f"expected leaves {trusted.size}..{stop - 1}, got {len(got)} leaves"
            + (f" (index {first} missing or out of order)" if first is not None else ""),
            code=LEAVES_NOT_CONTIGUOUS,
        )
    key = member.log_key()
    owner = manifest.member(member.id)
    parts = 1 if pool is None else max(1, min(_POOL_SLICES, len(leaves) // _MIN_SLICE))
    slices = _slices(leaves, parts)

    def check(run: Sequence[tuple[int, bytes]]) -> _SliceResult:
        return _check_slice(member, key, owner, run)

    results = map(check, slices) if parts == 1 or pool is None else pool.map(check, slices)
    out: list[VerifiedLeaf] = []
    ids: set[str] = set()
    for run, (checked, error) in zip(slices, results, strict=True):
        for (index, data), signed in zip(run, checked, strict=False):
            if signed.entry.id in ids:
                raise VerificationError(
                    f"leaf {index} reuses entry id {signed.entry.id!r} within the batch",
                    code=DUPLICATE_ENTRY_ID,
                    field=f"leaves[{index}]",
                )
            ids.add(signed.entry.id)
            out.append(VerifiedLeaf(index, data, leaf_hash(data), signed))
        if error is not None:
            raise error
    _, frontier = extend_frontier(trusted.size, trusted.frontier, [v.leaf_hash for v in out])
    root = frontier_root(frontier)
    if stop == cp.size:
        if root != cp.root:
            raise VerificationError(
                f"leaves {trusted.size}..{cp.size - 1} do not rebuild the root of checkpoint"
                f" {cp.size}",
                code=ROOT_MISMATCH,
            )
    elif stop > 0:
        try:
            verify_consistency(stop, cp.size, end_proof, root, cp.root)
        except VerificationError as exc:
            raise VerificationError(
                f"leaves {trusted.size}..{stop - 1} are not proven a prefix of checkpoint"
                f" {cp.size}: {exc.message} ({exc.code})",
                code=CHUNK_NOT_PROVEN,
            ) from None
    return VerifiedBatch(cp, checkpoint_note, trusted.size, tuple(out), stop, root)


def describe(exc: FederationError) -> str:
    """One line for logs and ``/v1/status``: ``code: message``."""
    return f"{exc.code}: {exc.message}"
