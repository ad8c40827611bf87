"""Write offline audit bundles (``hashfed log export``) from a node or a local database.

From a node: its public read routes (manifest, each member's latest checkpoint, every leaf).
From a node's database (``--config node.toml``): every log it holds with its whole checkpoint
history and a consistency proof from each older checkpoint to the latest, so an offline audit
also checks that the node's own history never forked.  Either way the exporter verifies
nothing; the bundle is evidence for the auditor, who trusts only the manifest it is given.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from federation.audit.bundle import BundleWriter
from federation.audit.sources import HttpSource
from federation.config import load_config
from federation.core.checkpoint import Checkpoint
from federation.core.manifest import parse_signed_manifest, signed_manifest_json
from federation.core.note import SignedNote
from federation.errors import PeerError
from federation.log import reader
from federation.store import open_store
from federation.store.schema import checkpoints

PAGE = 1000


def _size_of(note: str) -> int:
    return Checkpoint.parse_body(SignedNote.parse(note).text).size


async def export_from_node(
    url: str, out: Path, *, clock: Callable[[], float], on_leaves: Callable[[int], None]
) -> int:
    """Write a bundle of every log ``url`` holds; returns the number of leaves written."""
    source = HttpSource(url)
    try:
        signed = parse_signed_manifest(await source.manifest())
        writer = BundleWriter(
            out, created=int(clock()), source=url, manifest=signed_manifest_json(signed)
        )
        total = 0
        try:
            for member in sorted(signed.manifest.members, key=lambda m: m.id):
                notes = await source.checkpoints(member.id)
                if not notes:
                    continue
                size = _size_of(notes[0])
                writer.log(member.id, size, notes)
                for start in range(0, size, PAGE):
                    page = await source.entries(member.id, start, min(PAGE, size - start))
                    if not page:
                        raise PeerError(
                            f"{url} served no leaves at {start} of {member.id}'s log",
                            code="peer_bad_response",
                        )
                    writer.entries(member.id, page)
                    total += len(page)
                    on_leaves(len(page))
        finally:
            writer.close()
        return total
    finally:
        await source.close()


async def export_from_config(
    config_path: Path, out: Path, *, clock: Callable[[], float], on_leaves: Callable[[int], None]
) -> int:
    """Write a bundle of every log in the node's database, with checkpoint history and proofs."""
    config = load_config(config_path)
    manifest = json.loads(config.manifest.path.read_bytes())
    store = await open_store(config.database.url, migrate=False)
    writer = BundleWriter(out, created=int(clock()), source=str(config_path), manifest=manifest)
    total = 0
    try:
        async with store.read() as conn:
            for state in await reader.all_log_states(conn):
                rows = await conn.execute(
                    select(checkpoints.c.size, checkpoints.c.note)
                    .where(checkpoints.c.origin == state.origin, checkpoints.c.size < state.size)
                    .order_by(checkpoints.c.size.desc())
                )
                history = [(int(r.size), str(r.note)) for r in rows]
                writer.log(state.member_id, state.size, [state.note] + [n for _, n in history])
                for size, _ in history:
                    if size > 0:
                        proof = await reader.consistency_proof(conn, state.origin, size, state.size)
                        writer.consistency(state.member_id, size, state.size, proof)
                for start in range(0, state.size, PAGE):
                    page = await reader.leaves(conn, state.origin, start, PAGE)
                    writer.entries(state.member_id, [(p.index, p.leaf) for p in page])
                    total += len(page)
                    on_leaves(len(page))
    finally:
        writer.close()
        await store.close()
    return total
