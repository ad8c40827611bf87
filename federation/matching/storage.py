"""The match service's queries: streaming the entries at start, details of hits, local content
and alerts.

Loading reads each log by primary-key ranges (``origin, idx``) in pages, each page in its own
short read, so a load of millions of rows holds no long transaction open against the writer
and never materialises the whole table.  Only the columns the index needs are read; labels and
leaf hashes of hits are fetched per request (:func:`entry_details`), because matches are rare
next to queries and keeping them in memory would double the index's footprint.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from federation.store import Store
from federation.store.schema import alerts, entries, local_content, logs

DETAILS_CHUNK = 500
"""Indexes per details query, well under SQLite's bound-parameter limit."""


@dataclass(frozen=True)
class Details:
    """What a match result shows beyond the index: the labels and the leaf hash."""

    labels: dict[str, Any]
    leaf_hash: str


async def log_sizes(store: Store) -> dict[str, int]:
    """Size of every log held (log origin → size); the load reads exactly these entries."""
    async with store.read() as conn:
        rows = await conn.execute(select(logs.c.origin, logs.c.size))
        return {str(r.origin): int(r.size) for r in rows}


_LOAD_COLUMNS = (
    entries.c.idx,
    entries.c.member_id,
    entries.c.kind,
    entries.c.signal_kind,
    entries.c.signal_value,
    entries.c.target_origin,
    entries.c.target_index,
    entries.c.verdict,
)


async def entry_pages(
    store: Store, origin: str, size: int, page: int
) -> AsyncIterator[Sequence[Any]]:
    """Entries ``[0, size)`` of log ``origin`` in index order, ``page`` rows at a time."""
    start = 0
    while start < size:
        async with store.read() as conn:
            rows = (
                await conn.execute(
                    select(*_LOAD_COLUMNS)
                    .where(entries.c.origin == origin, entries.c.idx >= start, entries.c.idx < size)
                    .order_by(entries.c.idx)
                    .limit(page)
                )
            ).all()
        if not rows:
            return
        yield rows
        start = int(rows[-1].idx) + 1


async def entry_details(
    store: Store, refs: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], Details]:
    """Labels and leaf hash of entries given as (log origin, index).

    Queried per origin as ``origin = ? AND idx IN (…)`` so both backends use the primary key
    (SQLite plans a row-value ``(origin, idx) IN (…)`` as a full scan).
    """
    by_origin: dict[str, list[int]] = {}
    for origin, idx in refs:
        by_origin.setdefault(origin, []).append(idx)
    columns = (entries.c.origin, entries.c.idx, entries.c.labels, entries.c.leaf_hash)
    out: dict[tuple[str, int], Details] = {}
    async with store.read() as conn:
        for origin, indexes in by_origin.items():
            for at in range(0, len(indexes), DETAILS_CHUNK):
                chunk = indexes[at : at + DETAILS_CHUNK]
                where = (entries.c.origin == origin) & entries.c.idx.in_(chunk)
                for r in await conn.execute(select(*columns).where(where)):
                    labels = json.loads(r.labels) if r.labels else {}
                    out[(str(r.origin), int(r.idx))] = Details(labels, bytes(r.leaf_hash).hex())
    return out


def _insert_ignoring(store: Store, table: Any) -> Any:
    """INSERT … ON CONFLICT DO NOTHING in the store's dialect (retries stay idempotent)."""
    if store.backend == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


async def insert_local(store: Store, items: Sequence[tuple[str, str, str]], now: int) -> list[int]:
    """Store local content (ref, kind, value); returns the row id of each, new or existing."""
    rows = [
        {"ref": ref, "signal_kind": kind, "signal_value": value, "created": now}
        for ref, kind, value in items
    ]
    ids: list[int] = []
    async with store.transaction() as conn:
        await conn.execute(_insert_ignoring(store, local_content), rows)
        for ref, kind, value in items:
            found = await conn.execute(
                select(local_content.c.id).where(
                    local_content.c.ref == ref,
                    local_content.c.signal_kind == kind,
                    local_content.c.signal_value == value,
                )
            )
            ids.append(int(found.scalar_one()))
    return ids


async def all_local(store: Store) -> list[tuple[int, str, str]]:
    """Every local content row as (id, kind, value)."""
    async with store.read() as conn:
        rows = await conn.execute(
            select(local_content.c.id, local_content.c.signal_kind, local_content.c.signal_value)
        )
        return [(int(r.id), str(r.signal_kind), str(r.signal_value)) for r in rows]


async def insert_alerts(store: Store, rows: Sequence[dict[str, Any]]) -> None:
    """Record alerts (local_id, origin = log origin, idx, distance, created); duplicates no-op."""
    if not rows:
        return
    async with store.transaction() as conn:
        await conn.execute(_insert_ignoring(store, alerts), list(rows))


async def list_alerts(store: Store, after: int, limit: int) -> list[dict[str, Any]]:
    """Alerts with id > ``after``, oldest first, joined with the local ref and the entry."""
    query = (
        select(
            alerts.c.id,
            alerts.c.distance,
            alerts.c.created,
            alerts.c.delivered_at,
            local_content.c.ref,
            entries.c.member_id,
            entries.c.idx,
            entries.c.labels,
            entries.c.leaf_hash,
        )
        .join(local_content, local_content.c.id == alerts.c.local_id)
        .join(entries, (entries.c.origin == alerts.c.origin) & (entries.c.idx == alerts.c.idx))
        .where(alerts.c.id > after)
        .order_by(alerts.c.id)
        .limit(limit)
    )
    async with store.read() as conn:
        rows = (await conn.execute(query)).all()
    return [
        {
            "id": int(r.id),
            "ref": r.ref,
            "origin": r.member_id,
            "index": int(r.idx),
            "distance": int(r.distance),
            "labels": json.loads(r.labels) if r.labels else {},
            "leaf_hash": bytes(r.leaf_hash).hex(),
            "created": int(r.created),
            "delivered": r.delivered_at is not None,
        }
        for r in rows
    ]
