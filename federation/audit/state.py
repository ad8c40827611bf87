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
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from federation.errors import InputError

STATE_FORMAT = "hashfed-audit-state/v1"
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
    return state


def save_state(path: Path, state: AuditorState) -> None:
    """Write ``state`` atomically (temp file + fsync + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
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
