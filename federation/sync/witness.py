"""The witness: C2SP tlog-witness ``add-checkpoint`` served by a ``witness`` member's node.

A witness cosigns a member's checkpoint only if it is consistent with the last checkpoint of
that log it cosigned, so that no member can show two histories to two halves of the
federation and get both witnessed (spec/sync.md §9).  The wire format is exactly C2SP
tlog-witness so that third-party witness clients can talk to us and we to third-party
witnesses::

    old <size>\\n
    <base64 consistency proof hash>\\n      (0..63 lines)
    \\n
    <the checkpoint as a signed note>

The answers follow the spec's status codes: 200 with the cosignature line(s), 400 malformed
request or ``old`` larger than the checkpoint, 403 no valid signature by the log's key (or the
member is suspended now, or the checkpoint is larger than its ``suspended_size``), 404 an origin
not in the manifest, 409 ``old`` is not the size we hold (body: our size in decimal,
``Content-Type: text/x.tlog.size``) or same size with another root, 422 a consistency proof
that does not verify.

The new state is committed *before* the cosignature leaves the node, and the commit is
conditional on the stored size still being ``old``: two racing requests (or two processes on
one database) can never both advance the state, so the witness never cosigns two
inconsistent checkpoints.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import structlog
from sqlalchemy import select, update

from federation.core.checkpoint import Checkpoint, open_checkpoint
from federation.core.cosignature import cosign
from federation.core.keys import SigningKey
from federation.core.manifest import Manifest
from federation.core.merkle import verify_consistency
from federation.core.note import NoteSignature, SignedNote
from federation.errors import (
    ConflictError,
    FederationError,
    ForbiddenError,
    InputError,
    NotFoundError,
    VerificationError,
)
from federation.store import Store
from federation.store.schema import witness_state

log = structlog.get_logger(__name__)

MAX_PROOF_LINES: Final = 63
"""tlog-witness: a consistency proof between two u64 sizes never needs more hashes."""
MAX_BODY_BYTES: Final = 64 * 1024
SIZE_CONTENT_TYPE: Final = "text/x.tlog.size"
"""Content type of a 409 body that carries the witness's size."""


@dataclass(frozen=True)
class AddCheckpoint:
    """One parsed ``add-checkpoint`` request."""

    old: int
    """The size the submitter believes the witness holds for this log."""
    proof: tuple[bytes, ...]
    """Consistency proof from ``old`` to the checkpoint's size (RFC 9162 §2.1.4)."""
    note: str
    """The checkpoint as a signed note, exactly as sent."""


class WitnessSizeConflict(ConflictError):
    """``old`` is not the size the witness holds; ``size`` is (sent back as text/x.tlog.size)."""

    code = "witness_size_mismatch"

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message)
        self.size = size


def _bad_request(reason: str) -> InputError:
    return InputError(f"malformed add-checkpoint request: {reason}", code="invalid_add_checkpoint")


def format_add_checkpoint(old: int, proof: Sequence[bytes], note: str) -> bytes:
    """The request body for ``old``, ``proof`` and the signed checkpoint ``note``."""
    lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode()


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Parse a request body strictly; InputError ``invalid_add_checkpoint`` (400)."""
    if len(body) > MAX_BODY_BYTES:
        raise _bad_request(f"body exceeds {MAX_BODY_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad_request("not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep or not note:
        raise _bad_request("no empty line before the checkpoint")
    lines = head.split("\n")
    first = lines[0]
    size_text = first.removeprefix("old ")
    if (
        size_text == first
        or not size_text.isascii()
        or not size_text.isdigit()
        or (len(size_text) > 1 and size_text[0] == "0")
        or len(size_text) > 20
    ):
        raise _bad_request("first line must be 'old <decimal size>'")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise _bad_request(f"more than {MAX_PROOF_LINES} proof lines")
    proof: list[bytes] = []
    for line in lines[1:]:
        try:
            value = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise _bad_request("a proof line is not base64") from None
        if len(value) != 32:
            raise _bad_request("a proof hash is not 32 bytes")
        proof.append(value)
    return AddCheckpoint(int(size_text), tuple(proof), note)


@dataclass(frozen=True)
class WitnessedState:
    """The last checkpoint of one log this witness cosigned."""

    size: int
    root: bytes


class Witness:
    """Verifies, records and cosigns checkpoints of the federation's logs (module docstring)."""

    def __init__(
        self,
        store: Store,
        key: SigningKey,
        manifest: Callable[[], Manifest],
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._key = key
        self._manifest = manifest
        self._clock = clock
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.cosigned = 0
        """Checkpoints cosigned since start (for logs and tests)."""

    async def state(self, origin: str) -> WitnessedState | None:
        """What we last cosigned for log ``origin``, or None."""
        async with self._store.read() as conn:
            row = (
                await conn.execute(
                    select(witness_state.c.size, witness_state.c.root).where(
                        witness_state.c.origin == origin
                    )
                )
            ).first()
        return None if row is None else WitnessedState(int(row.size), bytes(row.root))

    def _open(self, note: str) -> Checkpoint:
        try:
            signed = SignedNote.parse(note)
            origin = Checkpoint.parse_body(signed.text).origin
        except VerificationError as exc:
            raise _bad_request(exc.message) from None
        manifest = self._manifest()
        member = manifest.member_by_origin(origin)
        if member is None:
            raise NotFoundError(f"no member has log origin {origin!r}", code="unknown_origin")
        now = int(self._clock())
        if not member.active_at(now):
            raise ForbiddenError(f"member {member.id} is suspended", code="member_suspended")
        try:
            cp = open_checkpoint(signed, member.log_key(), expected_origin=origin)
        except VerificationError as exc:
            raise ForbiddenError(
                f"checkpoint is not validly signed by {member.id}'s log key: {exc.message}",
                code="unverified_checkpoint",
            ) from None
        # Only reachable while a suspended_at is still ahead: a suspension by size alone makes
        # the member inactive at once.  Either way nothing beyond the vouched size is cosigned.
        if member.suspended_size is not None and cp.size > member.suspended_size:
            raise ForbiddenError(
                f"checkpoint {cp.size} of {member.id} is beyond its suspension at log size"
                f" {member.suspended_size}",
                code="member_suspended",
            )
        return cp

    async def add_checkpoint(self, body: bytes) -> list[NoteSignature]:
        """Handle one ``add-checkpoint``; the cosignature lines to answer with (200).

        Raises the errors listed in the module docstring, each with the spec's status.
        """
        request = parse_add_checkpoint(body)
        cp = self._open(request.note)
        if request.old > cp.size:
            raise _bad_request(f"old size {request.old} exceeds checkpoint size {cp.size}")
        async with self._locks[cp.origin]:
            held = await self.state(cp.origin)
            size = 0 if held is None else held.size
            if request.old != size:
                raise WitnessSizeConflict(
                    f"witness holds size {size} of {cp.origin}, not {request.old}", size=size
                )
            if held is not None and cp.size == held.size:
                if cp.root != held.root or request.proof:
                    log.error("witness_fork_refused", origin=cp.origin, size=cp.size)
                    raise ConflictError(
                        f"checkpoint {cp.size} of {cp.origin} has another root than the one"
                        " cosigned",
                        code="witness_root_mismatch",
                    )
            elif request.old == 0:
                if request.proof:
                    raise VerificationError(
                        "the consistency proof from size 0 must be empty",
                        code="bad_consistency_proof",
                    )
            else:
                assert held is not None
                try:
                    verify_consistency(request.old, cp.size, request.proof, held.root, cp.root)
                except FederationError as exc:
                    raise VerificationError(
                        f"consistency proof {request.old} -> {cp.size} does not verify:"
                        f" {exc.message}",
                        code="bad_consistency_proof",
                    ) from None
            now = int(self._clock())
            await self._persist(cp, request.note, held, now)
            self.cosigned += 1
        log.info("checkpoint_cosigned", origin=cp.origin, size=cp.size)
        return [cosign(cp.body(), self._key, now)]

    async def _persist(
        self, cp: Checkpoint, note: str, held: WitnessedState | None, now: int
    ) -> None:
        """Commit the new state, conditional on the old one (the cross-process guard)."""
        values = {"size": cp.size, "root": cp.root, "note": note, "updated_at": now}
        async with self._store.transaction() as conn:
            if held is None:
                existing = (
                    await conn.execute(
                        select(witness_state.c.size).where(witness_state.c.origin == cp.origin)
                    )
                ).first()
                if existing is not None:
                    raise WitnessSizeConflict(
                        f"witness state of {cp.origin} moved meanwhile", size=int(existing.size)
                    )
                await conn.execute(witness_state.insert().values(origin=cp.origin, **values))
                return
            result = await conn.execute(
                update(witness_state)
                .where(
                    witness_state.c.origin == cp.origin,
                    witness_state.c.size == held.size,
                    witness_state.c.root == held.root,
                )
                .values(**values)
            )
            if result.rowcount != 1:
                raise WitnessSizeConflict(
                    f"witness state of {cp.origin} moved meanwhile", size=held.size
                )


def cosignature_lines(signatures: Sequence[NoteSignature]) -> str:
    """The 200 body: one note signature line per cosignature."""
    return "".join(sig.line() for sig in signatures)
