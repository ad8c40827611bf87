"""One pull of one origin's log from one source: fetch, verify, apply — in bounded chunks.

The replicator decides *whom* to ask and what a failure means; this module does the asking.
Given a source's signed checkpoint C of size n and our trusted state T of size m, it moves the
mirror from m to n in chunks of at most ``chunk`` leaves (spec/sync.md §3.1):

1. the consistency proof m → n ties C to T (skipped when m = 0: nothing to be consistent with);
2. per chunk [s, e): fetch the leaves in pages, fetch the proof e → n (none when e = n), and
   :func:`~federation.core.replication.verify_batch` checks every leaf and that the tree of e
   leaves is a prefix of C; the chunk is applied in one transaction;
3. the proof e → n of one chunk is the T → C proof of the next (T is now the tree of e).

A chunk never crosses the origin's ``suspended_size``: the leaves below it are vouched for and
mirrored in full, and the first leaf at it is refused (``member_suspended``), ending the pull.
A chunk in which an entry id repeats is cut just before the repeat: the part before it is
applied, and the repeat then meets the held leaf as proven duplicate-id evidence.

Memory is bounded by two chunks (the one being verified and the next, prefetched), whatever
n − m is, and no unsigned tree head is ever trusted beyond what the proof to C establishes.
A crash between chunks leaves the verified size in ``mirror_progress``; the next pull resumes
from there against whatever checkpoint is newest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog

from federation.core.checkpoint import Checkpoint
from federation.core.entries import SignedEntry
from federation.core.manifest import Manifest, Member
from federation.core.replication import (
    DUPLICATE_ENTRY_ID,
    LEAVES_NOT_CONTIGUOUS,
    TrustedState,
    verify_batch,
)
from federation.errors import VerificationError
from federation.log import mirror
from federation.store import Store
from federation.sync.client import PeerClient

log = structlog.get_logger(__name__)

AppliedItem = tuple[str, int, SignedEntry]
"""(log origin, index, signed entry) of one entry that became part of a mirrored log."""


@dataclass(frozen=True)
class PullSettings:
    """How one pull pages and chunks (from ``[sync]`` in the node config)."""

    page_size: int
    """Leaves per ``entries`` request (≤ 1000)."""
    chunk: int
    """Leaves verified and applied per transaction (bounds memory)."""


async def fetch_leaves(
    client: PeerClient, member_id: str, start: int, end: int, page_size: int
) -> list[tuple[int, bytes]]:
    """Leaves ``[start, end)`` from ``client`` in pages; a page that makes no progress fails."""
    out: list[tuple[int, bytes]] = []
    while start < end:
        page = await client.get_entries(member_id, start, min(page_size, end - start))
        if not page.entries or page.entries[-1][0] < start:
            raise VerificationError(
                f"{client.peer_id} served no leaves at {start} below its checkpoint {end}",
                code=LEAVES_NOT_CONTIGUOUS,
            )
        out.extend(page.entries)
        start = page.entries[-1][0] + 1
    return out


async def _fetch_chunk(
    client: PeerClient, member_id: str, start: int, end: int, n: int, page_size: int
) -> tuple[list[tuple[int, bytes]], list[bytes]]:
    """The leaves ``[start, end)`` and the proof ``end → n`` (none when ``end`` is ``n``).

    Both are requested at once (one round trip, not two); their failures are still reported
    in the serial order — the proof's first — so the fault charged does not depend on timing.
    """
    proof_task = (
        asyncio.ensure_future(client.get_consistency(member_id, end, n)) if 0 < end < n else None
    )
    leaves_task = asyncio.ensure_future(fetch_leaves(client, member_id, start, end, page_size))
    return await _both(proof_task, leaves_task)


async def _both(
    proof_task: asyncio.Future[list[bytes]] | None,
    leaves_task: asyncio.Future[list[tuple[int, bytes]]],
) -> tuple[list[tuple[int, bytes]], list[bytes]]:
    """Await ``proof_task`` then ``leaves_task``; if either fails, cancel the other."""
    try:
        proof = [] if proof_task is None else await proof_task
        return await leaves_task, proof
    finally:
        await _cancel(proof_task)
        await _cancel(leaves_task)


def _workers() -> int:
    """Threads that check a chunk's leaves at once: one per core, at most four."""
    return max(1, min(4, os.cpu_count() or 1))


async def _cancel(task: asyncio.Future[Any] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
    if task is not None:
        with contextlib.suppress(BaseException):
            await task  # retrieve its outcome: a prefetch nobody needs is not an error


def _chunk_end(start: int, n: int, chunk: int, suspended_size: int | None) -> int:
    """Where the chunk starting at ``start`` ends, for a checkpoint of size ``n``.

    At most ``chunk`` leaves — but a chunk never crosses the origin's ``suspended_size``
    (spec/sync.md §3.1): a batch holding a refused entry is refused whole, so a chunk that
    straddled the size would lose the vouched entries below it.  Ending one chunk exactly at
    the size mirrors every vouched entry.  A chunk that starts at or beyond it holds a single
    leaf: that leaf is refused (``member_suspended``) whatever it is, and fetching one still
    runs the checks before it — the signature and consistency of the checkpoint, so a fork
    signed with a stolen key is still caught — without fetching a chunk of refused leaves.
    """
    if suspended_size is not None and start >= suspended_size:
        return min(n, start + 1)
    end = min(n, start + chunk)
    if suspended_size is not None and start < suspended_size < end:
        return suspended_size
    return end


def _repeated_leaf(exc: VerificationError, start: int, end: int) -> int | None:
    """The index of the leaf that repeats an entry id of an earlier leaf of the same chunk
    ``[start, end)``, if that is what ``exc`` is (verify_batch names it ``leaves[i]``)."""
    if exc.code != DUPLICATE_ENTRY_ID or exc.field is None:
        return None
    match = re.fullmatch(r"leaves\[(\d+)\]", exc.field)
    index = None if match is None else int(match.group(1))
    return index if index is not None and start < index < end else None


async def pull_range(
    client: PeerClient,
    member: Member,
    trusted: TrustedState | None,
    note: str,
    checkpoint: Checkpoint,
    *,
    store: Store,
    manifest: Manifest,
    now: int,
    settings: PullSettings,
    on_applied: Callable[[list[AppliedItem]], object],
    on_progress: Callable[[int], None] = lambda size: None,
) -> tuple[int, int]:
    """Bring ``member``'s mirror from ``trusted`` to ``checkpoint``; (leaves applied, new size).

    Raises whatever verification raises for the chunk at fault; chunks applied before it stay
    (each was proven a prefix of the signed checkpoint on its own).  Chunks end at the
    member's ``suspended_size`` (:func:`_chunk_end`), so every vouched entry is mirrored before
    the first refused one stops the pull.

    The next chunk is fetched while this one is verified and applied (the source builds its
    pages while we check signatures), and verification runs off the event loop on a few
    threads: Ed25519 in libsodium releases the GIL, so the signature checks use every core.
    At most two chunks are held at once, and nothing of the next one is used before this one
    is applied and the trusted state re-read.
    """
    m = 0 if trusted is None else trusted.size
    n = checkpoint.size
    chunk = max(1, settings.chunk)
    owner = manifest.member(member.id)
    cut = None if owner is None else owner.suspended_size

    def chunk_end(start: int) -> int:
        return _chunk_end(start, n, chunk, cut)

    total = 0
    end = chunk_end(m)
    # The proof m → n and the first chunk are requested at once (one round trip, not two).
    first_proof = (
        asyncio.ensure_future(client.get_consistency(member.id, m, n)) if 0 < m < n else None
    )
    pending: asyncio.Future[tuple[list[tuple[int, bytes]], list[bytes]]] | None = (
        asyncio.ensure_future(_fetch_chunk(client, member.id, m, end, n, settings.page_size))
    )
    pool = ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="verify")
    try:
        try:
            proof = [] if first_proof is None else await first_proof
        finally:
            await _cancel(first_proof)
        while True:
            current = pending or asyncio.ensure_future(
                _fetch_chunk(client, member.id, m, end, n, settings.page_size)
            )
            pending = None
            leaves, end_proof = await current
            if end < n and (cut is None or end <= cut):
                # Prefetch: the source works on the next chunk while we verify.  Not past the
                # first chunk beyond a suspension: that one is refused, nothing follows it.
                following = chunk_end(end)
                pending = asyncio.ensure_future(
                    _fetch_chunk(client, member.id, end, following, n, settings.page_size)
                )
            verify = functools.partial(
                verify_batch, member, trusted, note, manifest=manifest, now=now, pool=pool
            )
            try:
                batch = await asyncio.to_thread(verify, leaves, proof, end=end, end_proof=end_proof)
            except VerificationError as exc:
                repeat = _repeated_leaf(exc, m, end)
                if repeat is None:
                    raise
                # Both leaves with one id are in this chunk, neither proven in the log yet: end
                # the chunk just before the repeat, so that the next one meets the held leaf
                # in storage, after every check, as evidence (mirror.DuplicateEntry).
                await _cancel(pending)
                pending = None
                end = repeat
                end_proof = await client.get_consistency(member.id, end, n)
                batch = await asyncio.to_thread(
                    verify, leaves[: end - m], proof, end=end, end_proof=end_proof
                )
            del leaves
            async with store.transaction() as conn:
                applied = await mirror.apply_verified(
                    conn, member.id, member.log_origin, batch, now, end_proof=end_proof
                )
            if applied and batch.leaves:
                total += len(batch.leaves)
                log.info(
                    "mirror_applied",
                    origin=member.id,
                    source=client.peer_id,
                    start=batch.start,
                    size=batch.end,
                    checkpoint=n,
                )
                result = on_applied([(member.log_origin, v.index, v.signed) for v in batch.leaves])
                if inspect.isawaitable(result):
                    await result
            on_progress(batch.end)
            if batch.complete:
                return total, n
            async with store.read() as conn:
                trusted = await mirror.load_trusted(conn, member.log_origin)
            if trusted is None or trusted.size < end:
                return total, m  # someone else moved the log; the next pull starts afresh
            m, proof = trusted.size, end_proof if trusted.size == end else []
            if m >= n:
                return total, m
            if trusted.size != end:
                # Someone else applied past our chunk: what we prefetched starts elsewhere.
                await _cancel(pending)
                pending = None
                proof = await client.get_consistency(member.id, m, n)
                end = chunk_end(m)
            else:
                end = chunk_end(end)
    finally:
        await _cancel(pending)
        pool.shutdown(wait=False, cancel_futures=True)
