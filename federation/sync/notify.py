"""The push doorbell: ``POST /v1/notify`` (spec/sync.md §6).

A peer that has a new checkpoint for some origin — its own log after an append, or a mirror it
just applied — tells its peers, who compare it with what they hold and pull at once if it is
newer.  The doorbell carries no entries and is never trusted for content: the checkpoint must be
validly signed by the origin's log key, and entries still arrive only through a verified pull.
A checkpoint at or below our size is checked against our verified tree immediately, so a
doorbell is also checkpoint gossip: an inconsistent one becomes evidence and freezes the origin.

The server mounts :func:`handle_notify` behind request authentication; the authenticated
sender's member id is passed in, and the handler never does more than O(log n) work itself.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from federation.core.canonical import parse_json
from federation.core.ids import MemberId
from federation.errors import FederationError, InputError
from federation.sync.replicator import Replicator

MAX_NOTIFY_BYTES: Final = 64 * 1024
MAX_NOTE_CHARS: Final = 16 * 1024


class NotifyRequest(BaseModel):
    """Body of ``POST /v1/notify``."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    origin: MemberId
    """Member id of the log the checkpoint belongs to (the sender's own, or one it mirrors)."""
    checkpoint: Annotated[str, Field(min_length=1, max_length=MAX_NOTE_CHARS)]
    """The checkpoint as a signed note (C2SP tlog-checkpoint), cosignatures allowed."""


def parse_notify(body: bytes) -> NotifyRequest:
    """Parse a doorbell body; InputError ``invalid_notify`` names the field at fault."""
    if len(body) > MAX_NOTIFY_BYTES:
        raise InputError(
            f"notify body exceeds {MAX_NOTIFY_BYTES} bytes", code="invalid_notify", field="$"
        )
    try:
        return NotifyRequest.model_validate(parse_json(body))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "$"
        raise InputError(
            f"invalid notify body: {field}: {first['msg']}", code="invalid_notify", field=field
        ) from None
    except FederationError as exc:
        raise InputError(
            f"notify body is not JSON: {exc.message}", code="invalid_notify", field="$"
        ) from None


async def handle_notify(replicator: Replicator, sender: str, body: bytes) -> dict[str, Any]:
    """Handle one doorbell from authenticated member ``sender``; the JSON to answer (202).

    Raises InputError ``invalid_notify`` (bad body), NotFoundError-like InputError
    ``unknown_log`` (origin is not a log we mirror), or the VerificationError of a checkpoint
    that is not validly signed by the origin.  Any valid contact resets ``sender``'s backoff.
    """
    request = parse_notify(body)
    await replicator.reset_backoff(sender)
    outcome = await replicator.check_gossip(request.origin, request.checkpoint, sender)
    return {"origin": request.origin, "outcome": outcome}
