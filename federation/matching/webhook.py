"""Delivery of retroactive alerts to the platform's webhook (spec/sync.md §11).

The match service records an ``alerts`` row when a newly arriving submission matches content
the platform registered.  This module delivers each row to ``[alerts] webhook_url`` as one
JSON ``POST``, signed with RFC 9421 exactly like requests between nodes (``keyid`` =
``[alerts] webhook_key_id``, destination header = our member id), so a receiver can use any
RFC 9421 verifier and the public key of ``webhook_key``.

Delivery is at least once and survives restarts, because the state lives in the row: a 2xx
answer sets ``delivered_at``; anything else increments ``attempts`` and moves
``next_attempt`` out by ``retry_base · 2^(attempts-1)`` seconds, capped at ``retry_max``.
The sender scans for due rows when poked (after entries are applied) and every
``poll_interval`` seconds, so rows recorded by any path — or before a restart — go out.
Receivers must deduplicate by ``alert.id``.  Nothing logged here contains a hash value.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import structlog
from sqlalchemy import select, update

from federation.client.signer import SignedSession
from federation.core.keys import SigningKey
from federation.store import Store
from federation.store.schema import alerts, entries, local_content

log = structlog.get_logger(__name__)

BATCH: Final = 100
"""Due alerts read per scan; a longer backlog is drained scan after scan."""


@dataclass(frozen=True)
class WebhookSettings:
    """Where and how alerts are delivered."""

    url: str
    """The platform's webhook URL."""
    key: SigningKey
    """Signs each request (RFC 9421)."""
    keyid: str
    """RFC 9421 ``keyid`` of ``key``."""
    member_id: str
    """Our member id: the request's destination header and the body's ``member``."""
    retry_base: float = 2.0
    retry_max: float = 600.0
    timeout: float = 10.0
    poll_interval: float = 5.0


def retry_delay(attempts: int, base: float, cap: float) -> int:
    """Seconds to wait after the ``attempts``-th failed attempt (exponential, capped)."""
    return int(min(cap, base * 2 ** max(0, attempts - 1)))


def alert_json(row: Any, member_id: str) -> dict[str, Any]:
    """The webhook body for one joined alert row."""
    return {
        "member": member_id,
        "alert": {
            "id": int(row.id),
            "ref": row.ref,
            "origin": row.member_id,
            "index": int(row.idx),
            "distance": int(row.distance),
            "labels": json.loads(row.labels) if row.labels else {},
            "leaf_hash": bytes(row.leaf_hash).hex(),
            "created": int(row.created),
        },
    }


class AlertSender:
    """Background at-least-once delivery of alert rows (see module docstring)."""

    def __init__(self, store: Store, settings: WebhookSettings, clock: Callable[[], float]) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._stopping = False
        self.delivered = 0
        """Alerts delivered since start."""
        self.failed = 0
        """Failed attempts since start (each is retried)."""

    def start(self) -> None:
        """Start delivering in the background."""
        self._task = asyncio.create_task(self._run(), name="alert-webhook")

    def poke(self) -> None:
        """New alerts may have been recorded: scan now."""
        self._wake.set()

    async def close(self) -> None:
        """Stop delivering; undelivered rows stay due for the next start."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                wait = await self.deliver_due()
            except Exception:  # a bad row or a database hiccup must not stop delivery
                log.exception("alert_delivery_crashed")
                wait = self._settings.poll_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.05, wait))

    async def deliver_due(self) -> float:
        """Try every due alert once; seconds until the next one is due (or the poll)."""
        now = int(self._clock())
        query = (
            select(
                alerts.c.id,
                alerts.c.distance,
                alerts.c.created,
                alerts.c.attempts,
                local_content.c.ref,
                entries.c.member_id,
                entries.c.idx,
                entries.c.labels,
                entries.c.leaf_hash,
            )
            .join(local_content, local_content.c.id == alerts.c.local_id)
            .join(entries, (entries.c.origin == alerts.c.origin) & (entries.c.idx == alerts.c.idx))
            .where(alerts.c.delivered_at.is_(None), alerts.c.next_attempt <= now)
            .order_by(alerts.c.id)
            .limit(BATCH)
        )
        async with self._store.read() as conn:
            rows = (await conn.execute(query)).all()
        for row in rows:
            ok = await self._post(alert_json(row, self._settings.member_id))
            await self._record(int(row.id), int(row.attempts) + 1, ok)
        if len(rows) == BATCH:
            return 0.0
        return await self._next_due(now)

    async def _next_due(self, now: int) -> float:
        async with self._store.read() as conn:
            due = (
                await conn.execute(
                    select(alerts.c.next_attempt)
                    .where(alerts.c.delivered_at.is_(None))
                    .order_by(alerts.c.next_attempt)
                    .limit(1)
                )
            ).scalar_one_or_none()
        if due is None:
            return self._settings.poll_interval
        return float(min(self._settings.poll_interval, max(0, int(due) - now) + 0.05))

    async def _record(self, alert_id: int, attempts: int, ok: bool) -> None:
        now = int(self._clock())
        if ok:
            values: dict[str, Any] = {"attempts": attempts, "delivered_at": now}
            self.delivered += 1
            log.info("alert_delivered", alert=alert_id, attempts=attempts)
        else:
            delay = retry_delay(attempts, self._settings.retry_base, self._settings.retry_max)
            values = {"attempts": attempts, "next_attempt": now + max(1, delay)}
            self.failed += 1
            log.warning("alert_delivery_failed", alert=alert_id, attempts=attempts, retry_in=delay)
        async with self._store.transaction() as conn:
            await conn.execute(update(alerts).where(alerts.c.id == alert_id).values(**values))

    async def _post(self, body: dict[str, Any]) -> bool:
        s = self._settings
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=s.timeout))
        signed = SignedSession(
            self._session, key=s.key, keyid=s.keyid, destination=s.member_id, clock=self._clock
        )
        try:
            async with signed.request("POST", s.url, json=body) as resp:
                await resp.read()
                return 200 <= resp.status < 300
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.info("alert_webhook_unreachable", error=type(exc).__name__)
            return False
