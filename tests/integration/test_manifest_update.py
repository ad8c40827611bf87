"""Manifest updates with real nodes: an update signed by the stewards in force is accepted and
spreads to every node (and survives a restart); one signed only by new stewards is refused;
a member suspended by an update has its new entries refused at peers, its old ones kept; a
member suspended at a log size has a thief's back-dated entries refused, and no later version
may drop that size."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from federation.core.entries import Submission
from federation.core.keys import SigningKey
from federation.core.labels import Labels
from federation.core.manifest import (
    Member,
    SignedManifest,
    parse_signed_manifest,
    sign_manifest,
    signed_manifest_json,
)
from federation.core.signals import Md5Signal
from tests.integration.harness import (
    Federation,
    MemberSpec,
    Node,
    client,
    make_federation,
    member_writer,
    wait_until,
)
from tests.integration.test_federation import (
    held,
    post,
    size_of,
    start_all,
    stop_all,
    submit,
)

MEMBERS = ("police", "hotline", "platform")
ROLES: dict[str, tuple[str, ...]] = {
    "police": ("submitter", "consumer"),
    "hotline": ("submitter", "consumer"),
    "platform": ("consumer",),
}


def genesis(fed: Federation) -> SignedManifest:
    return parse_signed_manifest(fed.manifest.read_bytes())


def update(
    fed: Federation, version: int, signers: list[SigningKey], **changes: Any
) -> SignedManifest:
    base = genesis(fed).manifest
    new = base.model_copy(update={"version": version, "issued_at": int(time.time()), **changes})
    return sign_manifest(new, signers)


async def version_of(node: Node) -> int:
    async with aiohttp.ClientSession() as s, s.get(f"{node.url}/v1/manifest") as r:
        body = await r.json()
        return int(body["manifest"]["version"])


@pytest.mark.slow
async def test_update_spreads_refused_takeover_and_suspension(tmp_path: Path) -> None:
    fed = make_federation(tmp_path, MEMBERS, loopback=True, roles=ROLES)
    assert fed.steward is not None
    nodes = {m: Node(fed.members[m]) for m in MEMBERS}
    police, hotline, platform = (nodes[m] for m in MEMBERS)
    await start_all(*nodes.values())
    try:
        await submit(hotline, 0, 2)

        async def platform_has_hotline(n: int) -> bool:
            cp = await held(platform, "hotline")
            return cp is not None and cp.size >= n

        await wait_until(lambda: platform_has_hotline(2), what="hotline's entries at platform")

        # an update signed only by a new steward: refused, nothing changes anywhere
        thief = SigningKey.generate("thief")
        takeover = update(fed, 2, [thief], stewards=(thief.public.vkey(),))
        status, body = await post(police, "/v1/manifest", signed_manifest_json(takeover))
        assert (status, body["error"]["code"]) == (422, "manifest_quorum_not_met")

        # v2 by the steward in force suspends hotline from now on
        suspended_at = int(time.time())
        members = tuple(
            m.model_copy(update={"status": "suspended", "suspended_at": suspended_at})
            if m.id == "hotline"
            else m
            for m in genesis(fed).manifest.members
        )
        v2 = update(fed, 2, [fed.steward], members=members)
        status, body = await post(police, "/v1/manifest", signed_manifest_json(v2))
        assert (status, body) == (200, {"version": 2, "outcome": "accepted"})
        status, body = await post(police, "/v1/manifest", signed_manifest_json(v2))
        assert (status, body["outcome"]) == (200, "known")

        async def everywhere() -> bool:
            return all([await version_of(n) == 2 for n in nodes.values()])

        await wait_until(everywhere, what="v2 pushed to every node")

        await asyncio.sleep(1.1)  # entries strictly after suspended_at
        await submit(hotline, 2, 1)  # its own node still appends...
        async with aiohttp.ClientSession() as s, s.get(f"{hotline.url}/v1/log/checkpoint") as r:
            assert r.status == 200
        await asyncio.sleep(2.0)  # ...but no peer applies it
        cp = await held(platform, "hotline")
        assert cp is not None
        assert cp.size == 2  # old entries kept, the new one refused
        match = {"signals": [{"kind": "md5", "value": f"{0:032x}"}]}
        status, body = await post(platform, "/v1/match", match)
        assert status == 200, body
        assert [m["origin"] for m in body["results"][0]["matches"]] == ["hotline"]

        # a restart keeps the accepted version (the file still holds v1)
        stop_all(platform)
        await start_all(platform)
        assert await version_of(platform) == 2
        assert json.loads(fed.manifest.read_text())["manifest"]["version"] == 1
    finally:
        stop_all(*nodes.values())


def suspended(fed: Federation, member_id: str, **suspension: int) -> tuple[Member, ...]:
    """The genesis members with ``member_id`` suspended as given."""
    return tuple(
        m.model_copy(update={"status": "suspended", **suspension}) if m.id == member_id else m
        for m in genesis(fed).manifest.members
    )


async def thief_appends(spec: MemberSpec, created: int, count: int) -> None:
    """What a thief holding ``spec``'s log key does: append entries with a back-dated
    ``created`` to the same (not forked) history, through the real log writer."""
    labels = Labels(categories=("csam",), severity="high", confirmed_by="police")
    async with member_writer(spec) as writer:
        await writer.append(
            [
                Submission(
                    origin=spec.member_id,
                    id=f"thief-{n}",
                    created=created,
                    signal=Md5Signal(value=f"{0xBAD00 + n:032x}"),
                    labels=labels,
                )
                for n in range(count)
            ]
        )


async def peer_error(node: Node, peer: str) -> str | None:
    """``last_error`` of ``node``'s replication from ``peer`` (signed ``/v1/status``)."""
    async with client(node) as s, s.request("GET", f"{node.url}/v1/status") as r:
        body = await r.json()
    row = next((p for p in body["peers"] if p["member"] == peer), None)
    return None if row is None else row["last_error"]


@pytest.mark.slow
async def test_back_dated_entries_beyond_suspended_size_are_refused(tmp_path: Path) -> None:
    fed = make_federation(tmp_path, MEMBERS, loopback=True, roles=ROLES)
    assert fed.steward is not None
    nodes = {m: Node(fed.members[m]) for m in MEMBERS}
    police, hotline, platform = (nodes[m] for m in MEMBERS)
    await start_all(*nodes.values())
    try:
        await submit(hotline, 0, 2)

        async def both_hold_two() -> bool:
            return [await size_of(x, "hotline") for x in (police, platform)] == [2, 2]

        await wait_until(both_hold_two, what="hotline's 2 entries at both peers")

        # hotline's log key is stolen: the stewards suspend it at the size every peer holds,
        # and from now on (suspended_at) as well
        suspended_at = int(time.time())
        v2 = update(
            fed,
            2,
            [fed.steward],
            members=suspended(fed, "hotline", suspended_at=suspended_at, suspended_size=2),
        )
        status, body = await post(police, "/v1/manifest", signed_manifest_json(v2))
        assert (status, body["outcome"]) == (200, "accepted")

        async def everywhere() -> bool:
            return all([await version_of(n) == 2 for n in nodes.values()])

        await wait_until(everywhere, what="v2 at every node")

        # the thief appends to hotline's own history, created an hour *before* suspended_at:
        # a suspension by time alone would let these through
        stop_all(hotline)
        await thief_appends(hotline.spec, suspended_at - 3600, 2)
        await start_all(hotline)

        async def refused() -> bool:
            error = await peer_error(platform, "hotline")
            return error is not None and error.startswith("member_suspended")

        await wait_until(refused, what="platform refusing hotline's back-dated entries")
        error = await peer_error(platform, "hotline")
        assert error is not None
        assert "leaf 2" in error
        assert "log size 2" in error
        assert await both_hold_two()  # nothing of the thief's batch applied anywhere
        match = {"signals": [{"kind": "md5", "value": f"{0xBAD00:032x}"}]}
        status, body = await post(platform, "/v1/match", match)
        assert status == 200, body
        assert body["results"][0]["matches"] == []

        # no later version may un-refuse them: dropping (or raising) the size is refused
        members = suspended(fed, "hotline", suspended_at=suspended_at)
        for version in (
            update(fed, 3, [fed.steward], members=members),
            update(
                fed,
                3,
                [fed.steward],
                members=suspended(fed, "hotline", suspended_at=suspended_at, suspended_size=4),
            ),
        ):
            status, body = await post(platform, "/v1/manifest", signed_manifest_json(version))
            assert (status, body["error"]["code"]) == (422, "manifest_suspension_weakened")
        assert await version_of(platform) == 2
    finally:
        stop_all(*nodes.values())
