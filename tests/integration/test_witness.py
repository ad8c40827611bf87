"""Witnessing with real nodes: a witness member's ``hashfed serve`` cosigns over C2SP
tlog-witness, refuses stale sizes (409) and bad proofs (422), keeps its state across a restart;
with ``witness_quorum = 1`` a platform applies the police log only once it is cosigned."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import aiohttp
import pytest

from federation.core.checkpoint import Checkpoint, checkpoint_cosignatures, sign_checkpoint
from federation.core.cosignature import verify_cosignature
from federation.core.entries import Submission, leaf_bytes, leaf_hash, sign_entry
from federation.core.keys import PublicKey
from federation.core.labels import Labels
from federation.core.note import SignedNote
from federation.core.signals import Md5Signal
from federation.core.tlog import MemoryHashStore
from federation.sync.witness import format_add_checkpoint
from tests.integration.harness import MemberSpec, Node, client, make_federation, wait_until
from tests.integration.test_federation import held, signed_get, start_all, stop_all, submit

ROLES: dict[str, tuple[str, ...]] = {
    "police": ("submitter", "consumer"),
    "hotline": ("submitter", "consumer"),
    "platform": ("consumer",),
    "auditor": ("auditor", "witness"),
}
LABELS = Labels(categories=("csam",), severity="high", confirmed_by="police")


class OfflineLog:
    """A member's log built in the test process with its own key (no node runs for it)."""

    def __init__(self, spec: MemberSpec) -> None:
        self.spec = spec
        self.hashes = MemoryHashStore()

    def grow(self, count: int) -> None:
        for _ in range(count):
            n = self.hashes.size
            entry = Submission(
                origin=self.spec.member_id,
                id=f"w-{n}",
                created=int(time.time()),
                signal=Md5Signal(value=hashlib.md5(b"%d" % n).hexdigest()),  # noqa: S324
                labels=LABELS,
            )
            self.hashes.append(leaf_hash(leaf_bytes(sign_entry(entry, self.spec.log_key))))

    def note(self) -> str:
        n = self.hashes.size
        cp = Checkpoint(self.spec.log_origin, n, self.hashes.root(n))
        return sign_checkpoint(cp, self.spec.log_key).serialise()


async def add_checkpoint(
    witness: Node, old: int, proof: list[bytes], note: str
) -> tuple[int, str, str]:
    body = format_add_checkpoint(old, proof, note)
    async with (
        client(witness) as s,
        s.request("POST", f"{witness.url}/v1/witness/add-checkpoint", body=body) as r,
    ):
        return r.status, r.content_type, await r.text()


@pytest.mark.slow
async def test_witness_cosigns_refuses_stale_and_bad_proofs_and_remembers(tmp_path: Path) -> None:
    fed = make_federation(tmp_path, ["police", "hotline", "auditor"], loopback=True, roles=ROLES)
    witness = Node(fed.members["auditor"])
    await start_all(witness)
    wkey = fed.members["auditor"].witness_key
    assert wkey is not None
    log = OfflineLog(fed.members["hotline"])  # hotline's node is not running: no races
    try:
        log.grow(5)
        status, _, text = await add_checkpoint(witness, 0, [], log.note())
        assert status == 200, text
        signed = SignedNote.parse(log.note() + text)
        verify_cosignature(signed.text, signed.signatures[-1], wkey.public)
        five = log.note()
        log.grow(3)
        status, ctype, text = await add_checkpoint(witness, 0, [], log.note())
        assert (status, ctype, text) == (409, "text/x.tlog.size", "5\n")
        bad = [bytes(32)] * len(log.hashes.consistency_proof(5, 8))
        status, _, text = await add_checkpoint(witness, 5, bad, log.note())
        assert status == 422, text
        assert "bad_consistency_proof" in text
        status, _, text = await add_checkpoint(witness, 5, [], five.replace("hotline", "nobody"))
        assert status == 404, text  # an origin no member has
        witness.stop()
        await start_all(witness)  # the state is in its database, not in memory
        status, ctype, text = await add_checkpoint(witness, 0, [], log.note())
        assert (status, ctype, text) == (409, "text/x.tlog.size", "5\n")
        good = log.hashes.consistency_proof(5, 8)
        status, _, text = await add_checkpoint(witness, 5, good, log.note())
        assert status == 200, text
    finally:
        stop_all(witness)


def cosigned_by(note_text: str, key: PublicKey) -> bool:
    return bool(checkpoint_cosignatures(SignedNote.parse(note_text), [key]))


@pytest.mark.slow
async def test_quorum_one_platform_applies_only_cosigned_checkpoints(tmp_path: Path) -> None:
    fed = make_federation(
        tmp_path, ["police", "platform", "auditor"], loopback=True, roles=ROLES, witness_quorum=1
    )
    police, platform, auditor = (Node(fed.members[m]) for m in ("police", "platform", "auditor"))
    wkey = fed.members["auditor"].witness_key
    assert wkey is not None
    await start_all(police, platform, auditor)
    try:
        await submit(police, 0, 3)

        async def platform_size() -> int:
            cp = await held(platform, "police")
            return 0 if cp is None else cp.size

        async def reached(n: int) -> bool:
            return await platform_size() >= n

        await wait_until(lambda: reached(3), what="platform applies the cosigned checkpoint")
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{platform.url}/v1/logs/police/checkpoint") as r,
        ):
            assert cosigned_by(await r.text(), wkey.public)
        auditor.stop()  # no witness: nothing more may be applied
        await submit(police, 3, 2)
        await asyncio.sleep(2.0)  # ten platform polls
        assert await platform_size() == 3
        status = await signed_get(platform, "/v1/status")
        assert "witness_quorum_not_met" in (status["sync"]["origins"]["police"]["last_error"] or "")
        assert status["sync"]["peers"]["police"]["failures"] == 0  # not the source's fault
        await start_all(auditor)
        await wait_until(lambda: reached(5), within=40.0, what="applied once cosigned")
    finally:
        stop_all(police, platform, auditor)
