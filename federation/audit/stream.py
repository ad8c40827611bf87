"""Stream one origin's leaves from a source through the worker pool into an :class:`OriginAudit`.

Pages are fetched a few ahead of the one being verified (I/O overlaps verification), cut into
chunks, and each chunk goes to a process pool: Ed25519 and the strict leaf parse hold the GIL,
so threads would not use the second core.  Results are folded strictly in order, because the
tree is a fold.  ``executor=None`` verifies inline (tests, tiny logs).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

from federation.audit.leaves import ChunkResult, ChunkTask, verify_chunk
from federation.audit.origin import OriginAudit
from federation.audit.sources import LogSource

PAGE = 1000
PREFETCH = 4


async def stream_leaves(
    audit: OriginAudit,
    source: LogSource,
    *,
    executor: Executor | None,
    chunk: int = 2000,
    in_flight: int = 8,
    on_chunk: Callable[[int], None] | None = None,
) -> None:
    """Verify leaves ``audit.size .. target size - 1`` from ``source``; gaps become findings."""
    member = audit.member
    end = audit.target.checkpoint.size
    loop = asyncio.get_running_loop()
    pending: deque[asyncio.Future[ChunkResult]] = deque()
    buf: list[bytes] = []
    buf_start = expected = audit.size

    def submit() -> None:
        nonlocal buf, buf_start
        if not buf:
            return
        task = ChunkTask(
            member.id,
            member.log_vkey,
            member.suspended_at,
            member.suspended_size,
            buf_start,
            tuple(buf),
        )
        if executor is None:
            fut: asyncio.Future[ChunkResult] = loop.create_future()
            fut.set_result(verify_chunk(task))
        else:
            fut = asyncio.wrap_future(executor.submit(verify_chunk, task))
        pending.append(fut)
        buf_start += len(buf)
        buf = []

    async def fold(keep: int) -> None:
        while len(pending) > keep:
            result = await pending.popleft()
            audit.apply(result)
            if on_chunk is not None:
                on_chunk(result.count)

    starts = iter(range(expected, end, PAGE))
    pages: deque[tuple[int, asyncio.Task[list[tuple[int, bytes]]]]] = deque()

    def prefetch() -> None:
        while len(pages) < PREFETCH:
            nxt = next(starts, None)
            if nxt is None:
                return
            coro = source.entries(member.id, nxt, min(PAGE, end - nxt))
            pages.append((nxt, asyncio.ensure_future(coro)))

    try:
        prefetch()
        while pages:
            page_start, task = pages.popleft()
            page = await task
            prefetch()
            want = min(PAGE, end - page_start)
            for index, leaf in page[:want]:
                if index != expected:
                    break
                buf.append(leaf)
                expected += 1
                if len(buf) >= chunk:
                    submit()
                    await fold(in_flight)
            if expected != page_start + want:
                break
        submit()
        await fold(0)
    finally:
        for _, task in pages:
            task.cancel()
        for fut in pending:
            fut.cancel()
    if expected < end:
        audit.missing(expected, source.name)
