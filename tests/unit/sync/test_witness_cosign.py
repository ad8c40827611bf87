"""The origin gathers cosignatures: over real HTTP to a witness, 409 recovery, stored note."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from federation.core.checkpoint import checkpoint_cosignatures
from federation.core.entries import Submission
from federation.core.manifest import Manifest
from federation.core.note import SignedNote
from federation.core.replication import check_witness_quorum
from federation.core.signals import Md5Signal
from federation.log import reader
from federation.log.writer import LogWriter
from federation.store import Store, open_store
from federation.sync.cosign import Cosigner
from federation.sync.witness import (
    SIZE_CONTENT_TYPE,
    Witness,
    WitnessSizeConflict,
    cosignature_lines,
    format_add_checkpoint,
)
from tests.unit.sync.helpers import HTTP_KEYS, LABELS, LOG_KEYS, T0, WITNESS_KEY, make_manifest

NOW = T0 + 1000


def sub(n: int) -> Submission:
    return Submission(
        origin="police",
        id=f"c-{n}",
        created=NOW,
        signal=Md5Signal(value=f"{n:032x}"),
        labels=LABELS,
    )


async def serve_witness(w: Witness) -> tuple[web.AppRunner, str]:
    """The witness behind a bare handler with the route's status mapping."""

    async def handle(request: web.Request) -> web.Response:
        try:
            sigs = await w.add_checkpoint(await request.read())
        except WitnessSizeConflict as exc:
            return web.Response(
                status=409,
                body=f"{exc.size}\n".encode(),
                headers={"Content-Type": SIZE_CONTENT_TYPE},
            )
        return web.Response(text=cosignature_lines(sigs))

    app = web.Application()
    app.router.add_post("/v1/witness/add-checkpoint", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    origin = await open_store(f"sqlite:///{tmp_path / 'origin.db'}")
    wit = await open_store(f"sqlite:///{tmp_path / 'witness.db'}")
    yield origin, wit
    await origin.close()
    await wit.close()


async def test_cosigner_stores_cosigned_note_and_recovers_from_409(
    stores: tuple[Store, Store],
) -> None:
    origin_store, witness_store = stores
    writer = LogWriter(
        origin_store,
        member_id="police",
        origin="police.example/hashfed",
        key=LOG_KEYS["police"],
        clock=lambda: NOW,
    )
    await writer.open()
    first = await writer.append([sub(n) for n in range(3)])
    holder: list[Manifest] = []
    w = Witness(witness_store, WITNESS_KEY, lambda: holder[0], lambda: NOW)
    runner, url = await serve_witness(w)
    try:
        manifest = make_manifest(witness_quorum=1)
        manifest = manifest.model_copy(
            update={
                "members": tuple(
                    m.model_copy(update={"endpoint": url}) if m.id == "witness" else m
                    for m in manifest.members
                )
            }
        )
        holder.append(manifest)
        # the witness already cosigned size 3 (e.g. before the origin restarted)
        await w.add_checkpoint(format_add_checkpoint(0, [], first.note))
        rung: list[str] = []
        cosigner = Cosigner(
            store=origin_store,
            manifest=lambda: manifest,
            self_id="police",
            origin="police.example/hashfed",
            transport_key=HTTP_KEYS["police"],
            keyid="police-http",
            clock=lambda: NOW,
            timeout=aiohttp.ClientTimeout(total=10),
            on_cosigned=rung.append,
        )
        second = await writer.append([sub(n) for n in range(3, 7)])
        try:
            assert await cosigner.gather(second.note)  # 409 -> resend from 3 with a proof
        finally:
            await cosigner.close()
        async with origin_store.read() as conn:
            stored = (await reader.log_state(conn, "police.example/hashfed")).note
        assert rung == [stored]
        signed = SignedNote.parse(stored)
        assert signed.text == SignedNote.parse(second.note).text
        assert set(checkpoint_cosignatures(signed, [WITNESS_KEY.public])) == {"witness.example"}
        check_witness_quorum(signed, manifest, NOW)  # a peer can now apply it
        state = await w.state("police.example/hashfed")
        assert state is not None
        assert state.size == 7
    finally:
        await runner.cleanup()
