"""Per-peer and per-origin replication health: backoff, last error, and the ``peers`` table.

Backoff is per peer, not per origin: a peer that served garbage or timed out for one log is
likely to do so for the next.  It doubles with each consecutive failure up to a cap.  A
transport failure (unreachable, timeout, 5xx) is cleared by any success or any authenticated
inbound contact from that peer (spec §7).  A *verification* failure — the peer served data that
did not verify for origin O — is cleared only by a good answer for O itself: otherwise a
malicious relay could serve its own (valid) log between tampered answers for someone else's and
never be backed off.  Which origins a peer is distrusted for is kept in memory only; a restart
forgets it (the failure count and backoff are stored).  State
lives in memory for ``/v1/status`` and is written through to ``peers`` so a restart keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.store.schema import peers

BASE_BACKOFF: Final = 2
MAX_BACKOFF: Final = 600


def backoff_seconds(failures: int, *, base: int = BASE_BACKOFF, cap: int = MAX_BACKOFF) -> int:
    """Delay after the ``failures``-th consecutive failure: base·2^(failures-1), capped."""
    if failures <= 0:
        return 0
    return min(cap, base << min(failures - 1, 30))


@dataclass
class PeerHealth:
    """What we know about one peer's recent behaviour."""

    member_id: str
    failures: int = 0
    backoff_until: int = 0
    last_success: int | None = None
    last_error: str | None = None
    last_error_at: int | None = None
    last_success_saved: int = 0
    """When ``last_success`` was last written to storage (not shown; see the replicator)."""
    distrusted: set[str] = field(default_factory=set)
    """Origins this peer served unverifiable data for since its last good answer for them."""

    def usable(self, now: int) -> bool:
        """Whether we may ask this peer now."""
        return now >= self.backoff_until

    def as_json(self) -> dict[str, Any]:
        """The ``/v1/status`` form."""
        return {
            "failures": self.failures,
            "backoff_until": self.backoff_until,
            "last_success": self.last_success,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }


@dataclass
class OriginHealth:
    """Replication state of one origin's log as this node sees it."""

    member_id: str
    size: int = 0
    last_success: int | None = None
    last_source: str | None = None
    last_error: str | None = None
    last_error_at: int | None = None
    frozen: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The ``/v1/status`` form."""
        return {
            "size": self.size,
            "last_success": self.last_success,
            "last_source": self.last_source,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "frozen": self.frozen,
        }


async def load_peer_health(conn: AsyncConnection) -> dict[str, PeerHealth]:
    """Every stored peer row as PeerHealth."""
    rows = await conn.execute(select(peers))
    return {
        r.member_id: PeerHealth(
            r.member_id,
            int(r.failures or 0),
            int(r.backoff_until or 0),
            None if r.last_success is None else int(r.last_success),
            r.last_error,
            None if r.last_error_at is None else int(r.last_error_at),
        )
        for r in rows
    }


async def save_peer_health(conn: AsyncConnection, health: PeerHealth) -> None:
    """Write one peer's state (insert or update)."""
    values = {
        "last_success": health.last_success,
        "last_error": health.last_error,
        "last_error_at": health.last_error_at,
        "failures": health.failures,
        "backoff_until": health.backoff_until,
    }
    result = await conn.execute(
        update(peers).where(peers.c.member_id == health.member_id).values(**values)
    )
    if result.rowcount == 0:
        await conn.execute(peers.insert().values(member_id=health.member_id, **values))


def mark_failure(
    health: PeerHealth, reason: str, now: int, *, distrust_origin: str | None = None
) -> None:
    """Count a failure and push the peer's backoff out; ``distrust_origin`` names the origin a
    verification failure was about (see the module docstring)."""
    if distrust_origin is not None:
        health.distrusted.add(distrust_origin)
    health.failures += 1
    health.last_error = reason[:1000]
    health.last_error_at = now
    health.backoff_until = now + backoff_seconds(health.failures)


def mark_success(health: PeerHealth, now: int, origin: str | None = None) -> None:
    """A good answer (for ``origin``): clear the failure count and backoff, unless the peer is
    still distrusted for another origin (the last error stays visible either way)."""
    health.last_success = now
    if origin is not None:
        health.distrusted.discard(origin)
    if health.distrusted:
        return
    health.failures = 0
    health.backoff_until = 0
