"""The witness (C2SP tlog-witness add-checkpoint): request format, checks, status codes, state."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.core.cosignature import verify_cosignature
from federation.core.manifest import Manifest
from federation.core.note import SignedNote
from federation.errors import FederationError
from federation.store import Store, open_store
from federation.sync.witness import (
    Witness,
    WitnessSizeConflict,
    cosignature_lines,
    format_add_checkpoint,
    parse_add_checkpoint,
)
from tests.unit.sync.helpers import T0, WITNESS_KEY, FakeLog, make_manifest, seeded

NOW = T0 + 500


@given(
    old=st.integers(min_value=0, max_value=2**64 - 1),
    proof=st.lists(st.binary(min_size=32, max_size=32), max_size=63),
)
@settings(max_examples=50)
def test_request_round_trips(old: int, proof: list[bytes]) -> None:
    note = FakeLog().note(0)
    parsed = parse_add_checkpoint(format_add_checkpoint(old, proof, note))
    assert (parsed.old, list(parsed.proof), parsed.note) == (old, proof, note)


@pytest.mark.parametrize(
    "body",
    [
        b"old 1\n",  # no blank line, no note
        b"old 01\n\nx",  # leading zero
        b"old -1\n\nx",
        b"new 1\n\nx",
        b"old 1\nnot base64!\n\nx",
        b"old 1\n" + base64.b64encode(b"short") + b"\n\nx",
        b"old 1\n" + b"\n".join([base64.b64encode(bytes(32))] * 64) + b"\n\nx",
        b"\xff\xfe",
    ],
)
def test_malformed_requests_are_400(body: bytes) -> None:
    with pytest.raises(FederationError) as info:
        parse_add_checkpoint(body)
    assert (info.value.status, info.value.code) == (400, "invalid_add_checkpoint")


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = await open_store(db_url)
    yield s
    await s.close()


def witness(store: Store, manifest: Manifest | None = None) -> Witness:
    m = manifest or make_manifest()
    return Witness(store, WITNESS_KEY, lambda: m, lambda: NOW)


async def add(w: Witness, old: int, proof: list[bytes], note: str) -> str:
    return cosignature_lines(await w.add_checkpoint(format_add_checkpoint(old, proof, note)))


async def test_cosigns_a_first_checkpoint_and_then_consistent_growth(store: Store) -> None:
    log = FakeLog()
    log.add(5)
    w = witness(store)
    lines = await add(w, 0, [], log.note())
    signed = SignedNote.parse(log.note() + lines)
    assert verify_cosignature(signed.text, signed.signatures[-1], WITNESS_KEY.public) == NOW
    log.add(4)
    await add(w, 5, log.proof(5, 9), log.note())
    state = await w.state(log.origin)
    assert state is not None
    assert (state.size, state.root) == (9, log.hashes.root(9))


async def test_stale_old_size_is_409_with_our_size_even_after_restart(store: Store) -> None:
    log = FakeLog()
    log.add(6)
    await add(witness(store), 0, [], log.note())
    restarted = witness(store)  # a new process on the same database
    log.add(2)
    with pytest.raises(WitnessSizeConflict) as info:
        await add(restarted, 0, [], log.note())
    assert (info.value.status, info.value.size) == (409, 6)


async def test_rollback_and_bad_proof_and_fork_are_refused(store: Store) -> None:
    log = FakeLog()
    log.add(8)
    w = witness(store)
    await add(w, 0, [], log.note())
    with pytest.raises(FederationError) as info:  # an older checkpoint: old > its size
        await add(w, 8, [], log.note(4))
    assert info.value.status == 400
    log.add(3)
    bad = [bytes(32)] * len(log.proof(8, 11))
    with pytest.raises(FederationError) as info:
        await add(w, 8, bad, log.note())
    assert (info.value.status, info.value.code) == (422, "bad_consistency_proof")
    fork = FakeLog()
    fork.add(7)
    fork.add(1, created=T0 + 99)  # same size 8, another last leaf
    with pytest.raises(FederationError) as info:
        await add(w, 8, [], fork.note())
    assert (info.value.status, info.value.code) == (409, "witness_root_mismatch")
    state = await w.state(log.origin)
    assert state is not None
    assert state.size == 8


async def test_unknown_origin_is_404_and_bad_signature_403(store: Store) -> None:
    w = witness(store)
    stranger = FakeLog("police", key=seeded("witness test: stranger", "stranger.example/hashfed"))
    stranger.add(1)
    with pytest.raises(FederationError) as info:
        await add(w, 0, [], stranger.note())
    assert (info.value.status, info.value.code) == (404, "unknown_origin")
    forged = FakeLog("police", key=seeded("witness test: forger", "police.example/hashfed"))
    forged.add(1)
    with pytest.raises(FederationError) as info:
        await add(w, 0, [], forged.note())
    assert (info.value.status, info.value.code) == (403, "unverified_checkpoint")
    assert await w.state("police.example/hashfed") is None


async def test_suspended_member_is_403(store: Store) -> None:
    manifest = make_manifest(police={"status": "suspended", "suspended_at": T0})
    log = FakeLog()
    log.add(1)
    with pytest.raises(FederationError) as info:
        await add(witness(store, manifest), 0, [], log.note())
    assert (info.value.status, info.value.code) == (403, "member_suspended")


async def test_suspension_by_size_alone_is_403_at_once(store: Store) -> None:
    """No suspended_at: the member is suspended from the moment the version is in force, so
    nothing is cosigned, not even a checkpoint below the vouched size (the witness cannot
    tell the vouched history from a fork of it the thief signed)."""
    manifest = make_manifest(police={"status": "suspended", "suspended_size": 5})
    log = FakeLog()
    log.add(3)
    w = witness(store, manifest)
    with pytest.raises(FederationError) as info:
        await add(w, 0, [], log.note())
    assert (info.value.status, info.value.code) == (403, "member_suspended")
    assert await w.state(log.origin) is None


async def test_checkpoint_beyond_suspended_size_is_403_before_suspended_at(store: Store) -> None:
    """With suspended_at still ahead the member may be witnessed, but only up to the size."""
    manifest = make_manifest(
        police={"status": "suspended", "suspended_at": NOW + 3600, "suspended_size": 5}
    )
    log = FakeLog()
    log.add(5)
    w = witness(store, manifest)
    await add(w, 0, [], log.note())
    log.add(1, created=T0 - 10**6)  # back-dated: the size decides, not created
    with pytest.raises(FederationError) as info:
        await add(w, 5, log.proof(5, 6), log.note())
    assert (info.value.status, info.value.code) == (403, "member_suspended")
    assert "log size 5" in info.value.message
    state = await w.state(log.origin)
    assert state is not None
    assert state.size == 5


async def test_nonempty_proof_from_zero_is_422(store: Store) -> None:
    log = FakeLog()
    log.add(3)
    with pytest.raises(FederationError) as info:
        await add(witness(store), 0, [bytes(32)], log.note())
    assert (info.value.status, info.value.code) == (422, "bad_consistency_proof")
