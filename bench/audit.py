"""Full audit of one member's log served by a local node: entries/s next to the Ed25519 floor.

Issue target: a full audit of 1M entries from a local node in ≤ 60 s on a 2-core machine.
Verifying a leaf is a strict canonical parse plus one Ed25519 verification, so the floor is the
raw pynacl verify rate on the same machine, measured here on 1 core and on 2 processes.  The log
is populated straight into SQLite through ``LogWriter`` batch appends, then audited (a) over
HTTP from ``hashfed serve`` and (b) offline from a bundle exported from the node's database.
Note that in (a) the node shares the two cores with the auditor.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nacl.signing

from federation.audit.bundle import BundleSource
from federation.audit.export import export_from_config
from federation.audit.runner import AuditOptions, Auditor
from federation.audit.sources import HttpSource, LogSource
from federation.audit.state import AuditorState
from federation.core.entries import Submission
from federation.core.labels import Labels
from federation.core.manifest import Manifest, parse_signed_manifest
from federation.core.signals import Md5Signal
from federation.log.writer import LogWriter
from federation.store import open_store
from tests.integration.harness import Node, make_federation

BATCH = 5000
_MESSAGE = b"hashfed/v1/entry\n" + b"x" * 340


def _verify_many(n: int) -> int:
    key = nacl.signing.SigningKey(hashlib.sha256(b"bench audit").digest())
    sig = key.sign(_MESSAGE).signature
    vk = key.verify_key
    for _ in range(n):
        vk.verify(_MESSAGE, sig)
    return n


def raw_verify_rates(n: int) -> tuple[float, float]:
    """Ed25519 verifications per second on one core and on two processes."""
    start = time.perf_counter()
    _verify_many(n)
    one = n / (time.perf_counter() - start)
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_verify_many, [10, 10]))  # start the workers before timing
        start = time.perf_counter()
        list(pool.map(_verify_many, [n, n]))
        two = 2 * n / (time.perf_counter() - start)
    return one, two


async def populate(db: Path, member_id: str, origin: str, key_path: Path, count: int) -> None:
    from federation.keyfile import load_private_key

    store = await open_store(f"sqlite:///{db}")
    writer = LogWriter(
        store, member_id=member_id, origin=origin, key=load_private_key(key_path), clock=time.time
    )
    await writer.open()
    labels = Labels(categories=("csam",), severity="high", confirmed_by="police")
    now = int(time.time()) - 3600
    for start in range(0, count, BATCH):
        batch = [
            Submission(
                origin=member_id,
                id=f"bench-{n}",
                created=now + n // 100,
                signal=Md5Signal(value=hashlib.md5(str(n).encode()).hexdigest()),  # noqa: S324
                labels=labels,
            )
            for n in range(start, min(start + BATCH, count))
        ]
        await writer.append(batch)
    await store.close()


async def _audit(
    manifest: Manifest, make: Callable[[], LogSource], pool: ProcessPoolExecutor
) -> float:
    source = make()
    auditor = Auditor(manifest, [source], clock=time.time, executor=pool, options=AuditOptions())
    start = time.perf_counter()
    try:
        report, _ = await auditor.run(AuditorState(federation=manifest.federation))
    finally:
        await source.close()
    elapsed = time.perf_counter() - start
    assert report.verdict == "pass", report.model_dump_json()
    return elapsed


def run(quick: bool) -> None:
    count = 50_000 if quick else 1_000_000
    one, two = raw_verify_rates(3000 if quick else 20000)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fed = make_federation(root, ("police",))
        manifest = parse_signed_manifest(fed.manifest.read_bytes()).manifest
        spec = fed.members["police"]
        db = spec.config.parent / "node.db"
        start = time.perf_counter()
        asyncio.run(
            populate(db, "police", spec.log_origin, spec.config.parent / "keys/log.key", count)
        )
        populate_s = time.perf_counter() - start
        bundle = root / "log.bundle"
        asyncio.run(
            export_from_config(spec.config, bundle, clock=time.time, on_leaves=lambda n: None)
        )
        node = Node(spec).start()
        try:
            with ProcessPoolExecutor(2) as pool:
                http_s = asyncio.run(_audit(manifest, lambda: HttpSource(node.url), pool))
        finally:
            node.stop()
        with ProcessPoolExecutor(2) as pool:
            bundle_s = asyncio.run(_audit(manifest, lambda: BundleSource(bundle), pool))
    print(f"  {count:,} entries (populated in {populate_s:.1f} s)")
    print(f"  {'measure':<34}{'entries/s':>12}{'seconds':>10}")
    print(f"  {'raw Ed25519 verify, 1 core':<34}{one:>12,.0f}{count / one:>10.1f}")
    print(f"  {'raw Ed25519 verify, 2 processes':<34}{two:>12,.0f}{count / two:>10.1f}")
    print(f"  {'audit over HTTP (local node)':<34}{count / http_s:>12,.0f}{http_s:>10.1f}")
    print(f"  {'audit from a bundle (offline)':<34}{count / bundle_s:>12,.0f}{bundle_s:>10.1f}")
    scale = 1_000_000 / count
    print(
        f"  projected 1M: HTTP {http_s * scale:.0f} s, bundle {bundle_s * scale:.0f} s"
        " (target 60 s)"
    )
