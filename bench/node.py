"""A real node over loopback HTTP: submissions/s into SQLite (and PostgreSQL), match
requests/s against N indexed hashes, next to the in-process MatchService on the same data.

Submissions go through the whole path (signed request, auth, validation, signing each entry,
durable transactions, receipts); the node commits concurrent requests together (group commit,
spec/log.md *Appending*), and the table says how many requests shared a checkpoint.  A short
warm-up precedes the timed runs (the first appends load compiled index kernels).

For matching, the database is filled first by direct batch appends with :class:`LogWriter`
(the server is not running), then ``hashfed serve`` starts and loads the index; the same
queries are timed over HTTP and through an in-process :class:`MatchService` loaded from the
same database, and the difference is the HTTP overhead per request (client signing,
transport, auth, JSON).  10% of query signals hit an indexed hash, so the labels/leaf-hash
lookup is exercised too.

Targets: ≥ 5,000 entries/s batched into SQLite; HTTP overhead ≤ 1 ms per request at batch 1.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from pathlib import Path

from federation.core.entries import Submission
from federation.core.labels import Labels
from federation.core.manifest import Policy
from federation.core.signals import PdqSignal
from federation.matching.service import MatchService
from federation.store import open_store
from tests import dbs
from tests.integration.harness import MemberSpec, Node, client, make_federation, member_writer

LABELS = {"categories": ["csam"], "severity": "high", "confirmed_by": "police"}
CONCURRENCY = 8
HIT_EVERY = 10


def _hex(rng: random.Random) -> str:
    return rng.getrandbits(256).to_bytes(32, "big").hex()


def _checkpoint_size(body: bytes) -> int:
    """Size of the checkpoint a 201 answered with (the second line of the first receipt's note),
    found without parsing the whole body in the client."""
    at = body.index(b'"checkpoint":"') + len(b'"checkpoint":"')
    _origin, size, _rest = body[at:].split(b"\\n", 2)  # JSON-escaped newlines
    return int(size)


async def _submit_rate(
    node: Node, batch: int, requests: int, prefix: str = "b"
) -> tuple[float, int, int]:
    """Entries/s with CONCURRENCY clients each sending ``requests // CONCURRENCY`` batches;
    also the number of requests and of distinct checkpoints that answered them (the node
    commits concurrent requests together: spec/log.md *Appending*)."""
    rng = random.Random(batch)
    per_worker = max(1, requests // CONCURRENCY)
    sizes: set[int] = set()

    async def worker(w: int) -> None:
        async with client(node) as signed:
            for r in range(per_worker):
                items = [
                    {
                        "id": f"{prefix}{batch}-w{w}-r{r}-{i}",
                        "signal": {"kind": "pdq", "value": _hex(rng), "quality": 90},
                        "labels": LABELS,
                    }
                    for i in range(batch)
                ]
                body = {"submissions": items}
                async with signed.request("POST", f"{node.url}/v1/submissions", json=body) as resp:
                    answer = await resp.read()
                    assert resp.status == 201, resp.status
                    sizes.add(_checkpoint_size(answer))

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))
    rate = per_worker * CONCURRENCY * batch / (time.perf_counter() - start)
    return rate, per_worker * CONCURRENCY, len(sizes)


def _submissions(backend: str, root: Path, quick: bool) -> None:
    urls: dict[str, str] = {}
    if backend == "postgresql":
        urls["police"] = asyncio.run(dbs.create_pg_database())
    fed = make_federation(root, database_urls=urls, max_batch=100, max_body_bytes=1 << 20)
    node = Node(fed.members["police"]).start()
    try:
        # warm-up: the first appends load compiled index kernels and fill connection pools
        asyncio.run(_submit_rate(node, 100, 16, prefix="warm"))
        single = asyncio.run(_submit_rate(node, 1, 200 if quick else 2000))
        batched = asyncio.run(_submit_rate(node, 100, 40 if quick else 400))
    finally:
        node.stop()
        if urls:
            asyncio.run(dbs.drop_pg_database(urls["police"]))
    for label, (rate, requests, checkpoints) in (("batch 1", single), ("batch 100", batched)):
        target = "  (target >= 5,000)" if backend == "sqlite" and label == "batch 100" else ""
        print(
            f"  {backend:<11}{label:>10}{rate:>14,.0f} entries/s"
            f"   {requests / checkpoints:>5.1f} requests per checkpoint{target}"
        )


async def _populate(spec: MemberSpec, url: str, n: int, seed: int) -> list[str]:
    """Append ``n`` PDQ submissions straight into the log; returns their hashes."""
    rng = random.Random(seed)
    labels = Labels.model_validate(LABELS)
    values = [_hex(rng) for _ in range(n)]
    step = 5000
    async with member_writer(spec, url) as writer:
        for at in range(0, n, step):
            batch = [
                Submission(
                    origin=spec.member_id,
                    id=f"pop-{i}",
                    created=1_700_000_000,
                    signal=PdqSignal(value=values[i], quality=90),
                    labels=labels,
                )
                for i in range(at, min(n, at + step))
            ]
            await writer.append(batch)
    return values


def _queries(
    values: list[str], count: int, batch: int, seed: int, hit_every: int = HIT_EVERY
) -> list[list[str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        out.append(
            [
                rng.choice(values) if hit_every and rng.randrange(hit_every) == 0 else _hex(rng)
                for _ in range(batch)
            ]
        )
    return out


async def _http_match(node: Node, queries: list[list[str]]) -> float:
    """Seconds per request, sequential requests over one keep-alive connection."""
    async with client(node, "reader") as signed:
        start = time.perf_counter()
        for q in queries:
            body = {"signals": [{"kind": "pdq", "value": v} for v in q]}
            async with signed.request("POST", f"{node.url}/v1/match", json=body) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
        return (time.perf_counter() - start) / len(queries)


async def _service_match(url: str, batches: dict[str, list[list[str]]]) -> dict[str, float]:
    """In-process figures on the same database: load time, service and raw index per request."""
    store = await open_store(url, migrate=False)
    service = MatchService(Policy())
    start = time.perf_counter()
    await service.load(store)
    out = {"load": time.perf_counter() - start}
    for q in next(iter(batches.values()))[:20]:  # warm up: compiled kernels load on first use
        await service.match([("pdq", v) for v in q])
    for batch, queries in batches.items():
        start = time.perf_counter()
        for q in queries:
            await service.match([("pdq", v) for v in q])
        out[f"service{batch}"] = (time.perf_counter() - start) / len(queries)
        start = time.perf_counter()
        for q in queries:
            for v in q:
                service.index.match("pdq", v, 31)
        out[f"index{batch}"] = (time.perf_counter() - start) / len(queries)
    await store.close()
    return out


def _matching(root: Path, quick: bool) -> None:
    n = 50_000 if quick else 1_000_000
    fed = make_federation(root, max_batch=1000, max_body_bytes=1 << 20)
    spec = fed.members["police"]
    url = dbs.sqlite_url(spec.config.parent)
    start = time.perf_counter()
    values = asyncio.run(_populate(spec, url, n, seed=7))
    populate = time.perf_counter() - start
    count = 300 if quick else 2000
    batches = {
        "1 miss": _queries(values, count, 1, 1, hit_every=0),
        "1": _queries(values, count, 1, 2),
        "100": _queries(values, 20 if quick else 100, 100, 3),
    }
    start = time.perf_counter()
    node = Node(spec).start()
    ready = time.perf_counter() - start
    try:
        asyncio.run(_http_match(node, batches["1"][:20]))  # warm up (compiled kernels, pool)
        http = {b: asyncio.run(_http_match(node, q)) for b, q in batches.items()}
    finally:
        node.stop()
    local = asyncio.run(_service_match(url, batches))
    load = local["load"]
    print(f"  {n:,} PDQ entries: direct appends {n / populate:,.0f}/s;"
          f" node start to ready {ready:.1f} s ({n / ready:,.0f} entries/s);"
          f" in-process load {load:.1f} s ({n / load:,.0f} entries/s)")  # fmt: skip
    print(f"  {'batch':>8}{'HTTP req/s':>12}{'HTTP ms':>10}{'service ms':>12}"
          f"{'index ms':>10}{'overhead ms':>13}")  # fmt: skip
    for b in batches:
        over = (http[b] - local[f"service{b}"]) * 1e3
        service, index = local[f"service{b}"] * 1e3, local[f"index{b}"] * 1e3
        print(
            f"  {b:>8}{1 / http[b]:>12,.0f}{http[b] * 1e3:>10.3f}{service:>12.3f}"
            f"{index:>10.3f}{over:>13.3f}"
        )
    print(f"  batch 1 and 100: 1 in {HIT_EVERY} signals hits (labels/leaf hash read from the DB)")
    print("  overhead = HTTP − in-process service per request (target <= 1 ms at batch 1)")


def run(quick: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="hashfed-bench-node-") as tmp:
        root = Path(tmp)
        cpus = os.cpu_count()
        print(f"  submissions ({CONCURRENCY} concurrent signed clients, loopback, {cpus} cpus)")
        _submissions("sqlite", root / "sub-sqlite", quick)
        if dbs.postgres_unavailable_reason() is None:
            _submissions("postgresql", root / "sub-pg", quick)
        else:
            print("  postgresql: no server at 127.0.0.1:5432, skipped")
        _matching(root / "match", quick)
