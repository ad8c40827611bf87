"""Manifest updates: only a quorum of the previous stewards brings a version into force; the
accepted chain is stored, re-verified at start, and served to peers that missed versions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import update

from federation.core.canonical import canonical_json
from federation.core.manifest import SignedManifest, sign_manifest, signed_manifest_json
from federation.errors import VerificationError
from federation.store import Store, open_store
from federation.store.schema import manifests
from federation.sync.manifest_updates import ManifestKeeper, parse_chain
from tests.unit.sync.helpers import T0, make_manifest, seeded

STEWARD = seeded("sync test: steward", "steward")
NEWCOMER = seeded("sync test: new steward", "newcomer")


def version(n: int, *, signers: tuple[Any, ...] = (STEWARD,), **changes: Any) -> SignedManifest:
    base = make_manifest().model_copy(update={"version": n, "issued_at": T0 + n, **changes})
    return sign_manifest(base, list(signers))


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = await open_store(db_url)
    yield s
    await s.close()


async def test_update_by_previous_stewards_comes_into_force_and_survives_restart(
    store: Store,
) -> None:
    keeper = ManifestKeeper(version(1), lambda: T0)
    await keeper.load(store)
    seen: list[int] = []
    keeper.subscribe(lambda s: seen.append(s.manifest.version))
    assert await keeper.accept(version(2))
    assert not await keeper.accept(version(2))  # the version in force: nothing to do
    assert seen == [2]
    restarted = ManifestKeeper(version(1), lambda: T0)
    await restarted.load(store)
    assert restarted.manifest.version == 2
    assert [s.manifest.version for s in await restarted.history(0)] == [1, 2]
    assert [s.manifest.version for s in await restarted.history(1)] == [2]


async def test_update_signed_only_by_new_stewards_is_refused(store: Store) -> None:
    keeper = ManifestKeeper(version(1), lambda: T0)
    await keeper.load(store)
    takeover = version(2, signers=(NEWCOMER,), stewards=(NEWCOMER.public.vkey(),))
    with pytest.raises(VerificationError) as info:
        await keeper.accept(takeover)
    assert info.value.code == "manifest_quorum_not_met"
    assert keeper.manifest.version == 1
    assert [s.manifest.version for s in await keeper.history(0)] == [1]
    with pytest.raises(VerificationError) as info:
        await keeper.accept(version(1, policy=make_manifest(witness_quorum=1).policy))
    assert info.value.code == "manifest_version_not_newer"


async def test_chain_is_accepted_link_by_link_and_handed_stewardship_works(store: Store) -> None:
    keeper = ManifestKeeper(version(1), lambda: T0)
    await keeper.load(store)
    handover = version(2, stewards=(NEWCOMER.public.vkey(),))  # v1's steward hands over
    after = version(3, signers=(NEWCOMER,), stewards=(NEWCOMER.public.vkey(),))
    with pytest.raises(VerificationError):
        await keeper.accept(after)  # v3 alone is not signed by v1's stewards
    assert await keeper.accept_chain([after, handover]) == 2
    assert keeper.manifest.version == 3


async def test_tampered_stored_version_is_skipped_at_start(store: Store) -> None:
    keeper = ManifestKeeper(version(1), lambda: T0)
    await keeper.load(store)
    await keeper.accept(version(2))
    forged = version(2, signers=(NEWCOMER,))
    async with store.transaction() as conn:
        await conn.execute(
            update(manifests)
            .where(manifests.c.version == 2)
            .values(document=canonical_json(signed_manifest_json(forged)).decode())
        )
    restarted = ManifestKeeper(version(1), lambda: T0)
    await restarted.load(store)
    assert restarted.manifest.version == 1


def test_parse_chain_refuses_a_bad_shape() -> None:
    with pytest.raises(VerificationError):
        parse_chain({"manifests": "nope"})
    assert parse_chain({"manifests": []}) == []
