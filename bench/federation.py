"""Federation replication: propagation latency and catch-up throughput over real processes.

Every node is a real ``hashfed serve`` subprocess on loopback with its own SQLite file (the
integration harness builds the federation).  Two measurements:

* **propagation** — one submission at a time at the first node; latency is from sending the
  request to the moment *every* other node serves a checkpoint of that log including it
  (``GET /v1/logs/{origin}/checkpoint``).  Nodes poll only every 5 s, so what is measured is
  the push path: doorbell → pull → verify → apply.  Targets: p99 < 1 s at 10 nodes.
* **catch-up** — the origin holds N entries (written straight through the log writer before
  it starts); a fresh node joins and pulls them in verified chunks.  Throughput counts from
  the first applied chunk to the last (process start-up is reported separately).  Target:
  ≥ 5,000 entries/s.

The peer figure in the same run is the single-node append path (the origin answering the
submission request), so propagation overhead reads as a multiple of one local write.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.integration import harness
from tests.integration.harness import Node, client, make_federation, populate_log

LABELS = {"categories": ["csam"], "severity": "high", "confirmed_by": "police"}
POLL = 5.0
WATCH_EVERY = 0.02
"""Seconds between rounds of checkpoint reads while waiting for a submission to arrive.

Each round is one GET per node still behind; at 2 ms the watcher itself was the heaviest load
on a small machine (hundreds of requests per submission against ~30 of replication), so it
inflated what it measured.  20 ms adds at most 20 ms (10 ms on average) to a latency."""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _start(nodes: list[Node], batch: int = 3) -> None:
    """Start nodes a few at a time: ten interpreters importing at once on a small machine
    would exceed the harness's start-up timeout."""
    harness.START_TIMEOUT = 120.0
    for i in range(0, len(nodes), batch):
        threads = [threading.Thread(target=n.start) for n in nodes[i : i + batch]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    missing = [n.spec.member_id for n in nodes if not n.url]
    if missing:
        raise RuntimeError(f"nodes did not start: {missing}")


def _stop(nodes: list[Node]) -> None:
    threads = [threading.Thread(target=n.stop) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


async def _size(session: aiohttp.ClientSession, node: Node, member: str) -> int:
    async with session.get(f"{node.url}/v1/logs/{member}/checkpoint") as r:
        if r.status != 200:
            return 0
        return int((await r.text()).splitlines()[1])


async def _propagate(nodes: list[Node], count: int) -> tuple[list[float], list[float]]:
    origin, others = nodes[0], nodes[1:]
    member = origin.spec.member_id
    latencies: list[float] = []
    local: list[float] = []
    async with client(origin) as signed, aiohttp.ClientSession() as plain:
        for n in range(count):
            item = {"id": f"p-{n}", "signal": {"kind": "md5", "value": f"{n:032x}"}}
            body: dict[str, Any] = {"submissions": [{**item, "labels": LABELS}]}
            start = time.perf_counter()
            async with signed.request("POST", f"{origin.url}/v1/submissions", json=body) as r:
                assert r.status == 201, await r.text()
            local.append(time.perf_counter() - start)
            pending = set(range(len(others)))
            while pending:
                sizes = await asyncio.gather(*(_size(plain, others[i], member) for i in pending))
                pending = {i for i, s in zip(sorted(pending), sizes, strict=True) if s <= n}
                if pending:
                    await asyncio.sleep(WATCH_EVERY)
            latencies.append(time.perf_counter() - start)
    return latencies, local


def propagation(nodes_count: int, count: int) -> None:
    """Print p50/p99 of submit → visible at every other node."""
    with tempfile.TemporaryDirectory() as tmp:
        ids = ["police"] + [f"node-{i}" for i in range(1, nodes_count)]
        fed = make_federation(Path(tmp), ids, loopback=True, poll_interval=POLL)
        nodes = [Node(fed.members[m]) for m in ids]
        try:
            _start(nodes)
            latencies, local = asyncio.run(_propagate(nodes, count))
        finally:
            _stop(nodes)
    print(
        f"propagation  nodes={nodes_count:<3} n={count:<4}"
        f" p50={statistics.median(latencies) * 1000:7.1f} ms"
        f" p99={_pct(latencies, 0.99) * 1000:7.1f} ms"
        f"  (local append p50={statistics.median(local) * 1000:5.1f} ms;"
        f" ratio p50 {statistics.median(latencies) / statistics.median(local):4.1f}x)"
    )


async def _watch_catch_up(node: Node, total: int) -> tuple[float, float, int]:
    first_at, first_size = 0.0, 0
    async with client(node) as signed:
        while True:
            async with signed.request("GET", f"{node.url}/v1/status") as r:
                origins = (await r.json())["sync"]["origins"]
            size = int(origins.get("police", {}).get("size", 0))
            now = time.perf_counter()
            if size and not first_at:
                first_at, first_size = now, size
            if size >= total:
                return first_at, now, first_size
            await asyncio.sleep(0.02)


def catch_up(total: int) -> None:
    """Print the rate at which a joining node pulls, verifies and stores ``total`` entries."""
    with tempfile.TemporaryDirectory() as tmp:
        fed = make_federation(
            Path(tmp), ("police", "joiner"), loopback=True, poll_interval=POLL, chunk_size=2000
        )
        t = time.perf_counter()
        asyncio.run(populate_log(fed.members["police"], total))
        populate = time.perf_counter() - t
        police, joiner = Node(fed.members["police"]), Node(fed.members["joiner"])
        try:
            police.start()
            t0 = time.perf_counter()
            joiner.start()
            started = time.perf_counter() - t0
            first_at, done_at, first_size = asyncio.run(_watch_catch_up(joiner, total))
        finally:
            _stop([police, joiner])
    span = max(done_at - first_at, 1e-9)
    rate = (total - first_size) / span
    print(
        f"catch-up     entries={total:<7} {rate:9.0f} entries/s"
        f"  (first chunk {first_size} excluded; join start-up {started:4.1f} s;"
        f" total wall {done_at - t0:5.1f} s; origin populated in {populate:4.1f} s)"
    )


def run(quick: bool) -> None:
    """Propagation at 3 and 10 nodes, then catch-up of a node joining a large federation."""
    count = 50 if quick else 200
    for nodes_count in (3, 10):
        propagation(nodes_count, count)
    catch_up(10_000 if quick else 100_000)
