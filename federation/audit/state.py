"""The auditor's state file: what earlier runs verified, so later runs can prove consistency.

One JSON document (spec/audit.md §2) per auditor.  Per origin it keeps the last verified
checkpoint (size, root, the signed note as evidence) and the compact range of that tree, so the
next run verifies only new leaves: extending the stored frontier and matching the new signed
root proves both the new leaves and that the log still extends what was verified before.

``progress`` makes a long audit resumable: every few chunks the runner records how far it got
(the frontier over the leaves verified so far, their counters and references).  Those leaves
are not yet authenticated, but the root they extend to is compared with a signed checkpoint at
the end of the resumed run, which authenticates them all.  Progress is only recorded while an
origin has no findings, so a failing audit always restarts and reports everything.

Writes are atomic (temporary file in the same directory, fsync, rename): a crash leaves the old
state or the new one, never half of either.

Entry ids repeated across runs (``duplicate_entry_id``) need every verified leaf's id, which
would make the JSON grow by the log and be rewritten at every save.  They live instead beside
the state file, in ``<state>.ids/<member_id>.bin``: 8 bytes per leaf
(:func:`federation.audit.leaves.id_digest`), written before the JSON and only from the
first leaf that changed, so a save costs the new leaves, not the log.  A file is trusted for
its first ``8 × size`` bytes (``progress.size`` while progress is recorded); one that is
shorter, or absent (a state written before this file existed), is not used, and the runner
audits that origin in full once.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from federation.errors import InputError

STATE_FORMAT = "hashfed-audit-state/v1"
DIGEST_SIZE = 8
"""Bytes per leaf in an origin's id file (see the module docstring)."""
_MODEL = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class SavedReference(BaseModel):
    """A retraction or opinion seen during a run that was interrupted (checked on resume)."""

    model_config = _MODEL

    index: int
    """Index of the referring entry."""
    kind: str
    """``retraction`` or ``opinion``."""
    target_origin: str
    """Member id of the target's log."""
    target_index: int
    """Index of the target."""
    target_leaf_hash: str
    """Leaf hash of the target as written in the entry, hex."""
    verdict: str
    """Retraction reason or opinion verdict."""
    leaf: str
    """The referring leaf, base64."""


class Progress(BaseModel):
    """How far an unfinished run got through one origin's leaves."""

    model_config = _MODEL

    size: int
    """Leaves ``0 .. size-1`` are folded into ``frontier``."""
    frontier: tuple[str, ...]
    """Compact range of those leaves, hex, largest subtree first."""
    counts: dict[str, int]
    """Report counters over those leaves."""
    references: tuple[SavedReference, ...] = ()
    """References seen since the last completed run."""


class OriginState(BaseModel):
    """The last verified state of one member's log."""

    model_config = _MODEL

    size: int
    """Size of the last checkpoint verified."""
    root: str
    """Its root, hex."""
    frontier: tuple[str, ...]
    """Compact range of the verified tree, hex."""
    note: str | None = None
    """The signed checkpoint note (evidence for a later rollback or fork); None before any."""
    counts: dict[str, int] = Field(default_factory=dict)
    """Cumulative report counters (kinds, labels, retraction reasons)."""
    progress: Progress | None = None
    """An unfinished run beyond ``size``, if any."""


class AuditorState(BaseModel):
    """Everything an auditor remembers between runs."""

    model_config = _MODEL

    format: str = STATE_FORMAT
    """Format tag."""
    federation: str
    """Federation the state belongs to (a state file is never reused across federations)."""
    origins: dict[str, OriginState] = Field(default_factory=dict)
    """By member id."""

    # Entry id digests per member, beside the JSON (module docstring); replaced, never mutated
    # in place, because model_copy shares private attributes between copies.
    _ids: dict[str, bytes] = PrivateAttr(default_factory=dict)
    _dirty: dict[str, int] = PrivateAttr(default_factory=dict)
    """Member -> first leaf whose digest is not yet written to its file."""

    def id_digests(self, member_id: str, count: int) -> bytes | None:
        """The id digests of the member's leaves ``0 .. count-1``, or None if not held."""
        held = self._ids.get(member_id, b"")
        want = DIGEST_SIZE * count
        return held[:want] if len(held) >= want else None

    def with_id_digests(self, member_id: str, start: int, digests: bytes) -> AuditorState:
        """A copy whose digests of the member's leaves are those held for ``0 .. start-1``
        followed by ``digests`` (of leaves ``start ..``)."""
        held = self._ids.get(member_id, b"")
        if len(held) < DIGEST_SIZE * start:
            raise ValueError(f"no id digests of {member_id!r} below leaf {start}")
        copy = self.model_copy()
        copy._ids = {**self._ids, member_id: held[: DIGEST_SIZE * start] + digests}
        copy._dirty = {**self._dirty, member_id: min(start, self._dirty.get(member_id, start))}
        return copy


def load_state(path: Path, federation: str) -> AuditorState:
    """Read the state file, or an empty state when it does not exist yet."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return AuditorState(federation=federation)
    try:
        state = AuditorState.model_validate(json.loads(data))
    except (ValueError, ValidationError) as exc:
        raise InputError(f"state file {path} is not valid: {exc}", code="invalid_state") from None
    if state.format != STATE_FORMAT:
        raise InputError(f"state file {path} has format {state.format!r}", code="invalid_state")
    if state.federation != federation:
        raise InputError(
            f"state file {path} belongs to federation {state.federation!r}, not {federation!r}",
            code="invalid_state",
        )
    state._ids = _load_ids(_ids_dir(path), state.origins)
    return state


def _ids_dir(path: Path) -> Path:
    return path.parent / f"{path.name}.ids"


def _load_ids(directory: Path, origins: dict[str, OriginState]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for member_id, origin in origins.items():
        count = origin.progress.size if origin.progress is not None else origin.size
        try:
            with (directory / f"{member_id}.bin").open("rb") as f:
                data = f.read(DIGEST_SIZE * count)
        except FileNotFoundError:
            continue
        if len(data) == DIGEST_SIZE * count:
            found[member_id] = data
    return found


def _save_ids(directory: Path, state: AuditorState) -> None:
    """Write each changed id file from its first changed leaf on, durably."""
    if not state._dirty:
        return
    directory.mkdir(parents=True, exist_ok=True)
    for member_id, start in sorted(state._dirty.items()):
        data = state._ids.get(member_id, b"")
        file = directory / f"{member_id}.bin"
        with file.open("r+b" if file.exists() else "wb") as out:
            size = out.seek(0, os.SEEK_END)
            at = min(DIGEST_SIZE * start, size)  # a file cut short is rewritten from its end
            out.seek(at)
            out.write(data[at:])
            out.truncate()
            out.flush()
            os.fsync(out.fileno())
    state._dirty = {}


def save_state(path: Path, state: AuditorState) -> None:
    """Write ``state`` atomically (temp file + fsync + rename), after its id files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_ids(_ids_dir(path), state)
    data = state.model_dump_json(indent=1).encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
