"""An origin that logs one entry id twice, against real ``hashfed serve`` processes.

The misbehaving origin is played by code holding nothing a real attacker would not: the
origin's own log key and its database.  With the police node stopped, it appends to police's
log a second, validly signed leaf reusing the id of leaf 0 — which police's honest writer would
never do — with a checkpoint over it, restarts the node and rings the doorbells.  Every honest
node must keep the pair as evidence, freeze police at its last good size and say so at
``/v1/evidence``, ``/v1/status`` and ``/metrics`` (spec/sync.md §5.1), and an auditor reading
police's node must report it (spec/audit.md §3 step 8).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, update

from federation.audit.runner import Auditor
from federation.audit.sources import HttpSource
from federation.audit.state import AuditorState
from federation.core.checkpoint import Checkpoint, sign_checkpoint
from federation.core.entries import Submission, leaf_bytes, leaf_hash, sign_entry
from federation.core.labels import Labels
from federation.core.manifest import Member, parse_signed_manifest
from federation.core.signals import Md5Signal
from federation.log import tree
from federation.log.records import entry_row
from federation.store import open_store
from federation.store.schema import checkpoints, entries, logs
from federation.sync.client import PeerClient
from tests.integration.harness import MemberSpec, Node, make_federation, wait_until
from tests.integration.test_federation import (
    held,
    reaches,
    signed_get,
    size_of,
    start_all,
    stop_all,
    submit,
)
from tests.unit.sync.helpers import check_duplicate_record

LABELS = Labels(categories=("csam",), severity="high", confirmed_by="police")


async def append_duplicate(spec: MemberSpec, entry_id: str) -> str:
    """Append to ``spec``'s stopped node's own log a signed leaf with ``entry_id`` (already
    logged) and sign a checkpoint over it; return that checkpoint note.

    Storage keeps ids unique per log, so the row's ``entry_id`` column gets another value;
    the leaf — the only source of truth, what the node serves and peers verify — says
    ``entry_id``.
    """
    store = await open_store(f"sqlite:///{spec.config.parent / 'node.db'}")
    now = int(time.time())
    try:
        async with store.transaction() as conn:
            row = (await conn.execute(select(logs).where(logs.c.origin == spec.log_origin))).one()
            size = int(row.size)
            signed = sign_entry(
                Submission(
                    origin=spec.member_id,
                    id=entry_id,
                    created=now,
                    signal=Md5Signal(value="e" * 32),
                    labels=LABELS,
                ),
                spec.log_key,
            )
            leaf = leaf_bytes(signed)
            values = entry_row(spec.log_origin, size, signed, leaf, leaf_hash(leaf))
            values["entry_id"] = f"{entry_id} (again)"
            await conn.execute(entries.insert().values(**values))
            grown = await tree.append_leaf_hashes(conn, spec.log_origin, size, [leaf_hash(leaf)])
            cp = Checkpoint(spec.log_origin, grown.size, grown.root)
            note = sign_checkpoint(cp, spec.log_key).serialise()
            await conn.execute(
                update(logs)
                .where(logs.c.origin == spec.log_origin)
                .values(size=grown.size, root=grown.root, checkpoint=note, updated_at=now)
            )
            await conn.execute(
                checkpoints.insert().values(
                    origin=spec.log_origin,
                    size=grown.size,
                    root=grown.root,
                    note=note,
                    received_at=now,
                )  # fmt: skip
            )
        return note
    finally:
        await store.close()


async def ring(spec: MemberSpec, node: Node, manifest: dict[str, Any], note: str) -> None:
    """A doorbell from ``spec``'s node to ``node`` with ``note`` (signed by its transport key)."""
    member = next(m for m in manifest["members"] if m["id"] == node.spec.member_id)
    peer = Member.model_validate({**member, "endpoint": node.url})
    bell = PeerClient(peer, key=spec.transport_key, keyid=f"{spec.member_id}-t1", clock=time.time)
    try:
        await bell.notify(spec.member_id, note)
    finally:
        await bell.close()


@pytest.mark.slow
async def test_duplicate_entry_id_is_evidence_everywhere(tmp_path: Path) -> None:
    members = ("police", "hotline", "platform-a")
    fed = make_federation(tmp_path, members, loopback=True)
    nodes = [Node(fed.members[m]) for m in members]
    police, honest = nodes[0], nodes[1:]
    spec = fed.members["police"]
    try:
        await start_all(*nodes)
        receipts = await submit(police, 0, 2)
        assert receipts[0]["index"] == 0
        for n in honest:
            await wait_until(reaches(n, "police", 2), what=f"{n.spec.member_id} has police")
        police.stop()
        note = await append_duplicate(spec, "md5-0")  # leaf 2 reuses the id of leaf 0
        await start_all(police)
        cp = await held(police, "police")
        assert cp is not None
        assert cp.size == 3  # the origin serves its misbehaviour as it is
        manifest = json.loads(fed.manifest.read_text())["manifest"]
        for n in honest:
            await ring(spec, n, manifest, note)

        for n in honest:

            async def has_evidence(node: Node = n) -> bool:
                return bool((await signed_get(node, "/v1/evidence"))["evidence"])

            await wait_until(has_evidence, within=30, what=f"evidence at {n.spec.member_id}")
        for n in honest:
            [record] = (await signed_get(n, "/v1/evidence"))["evidence"]
            check_duplicate_record(record, spec.log_key.public, spec.log_origin, 0, 2)
            assert record["note_b"] == note
            assert record["reason"].startswith("duplicate_entry_id: ")
            assert record["source"] in members
            status = await signed_get(n, "/v1/status")
            frozen = {s["member"]: s["frozen"] for s in status["logs"]}
            assert frozen["police"] is True
            assert status["sync"]["origins"]["police"]["frozen"].startswith("duplicate_entry_id")
            # The evidence is no source's failure (the doorbell cleared police's backoff
            # from the restart, and nothing was charged since).
            assert status["sync"]["peers"]["police"]["failures"] == 0
            assert await size_of(n, "police") == 2  # stopped at the last good size
            async with aiohttp.ClientSession() as s, s.get(f"{n.url}/metrics") as r:
                assert "hashfed_evidence 1" in await r.text()
        # An auditor reading police's own node finds the same pair, proven on its own.
        source = HttpSource(police.url)
        try:
            auditor = Auditor(parse_signed_manifest(fed.manifest.read_bytes()).manifest, [source],
                              clock=time.time)  # fmt: skip
            report, _ = await auditor.run(AuditorState(federation="testfed"))
        finally:
            await source.close()
        [repeat] = [
            f
            for o in report.origins
            if o.member_id == "police"
            for f in o.findings
            if f.code == "duplicate_entry_id"
        ]
        assert [x["index"] for x in repeat.evidence["leaves"]] == [0, 2]
        assert repeat.evidence["checkpoint"] == note
        assert report.verdict == "fail"
        # Frozen means frozen: a later, honest entry of police is applied nowhere.
        await submit(police, 2, 1)
        await wait_until(reaches(police, "police", 4), what="police appended")
        await asyncio.sleep(1.0)  # its doorbells rang; five polls went by
        for n in honest:
            assert await size_of(n, "police") == 2
    finally:
        stop_all(*nodes)
