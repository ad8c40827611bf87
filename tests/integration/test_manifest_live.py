"""A manifest update takes effect in running nodes: a member moves its node to a new address,
the stewards publish the new endpoint, and the other nodes — never restarted — replicate from
it there; a new ``pdq_threshold`` changes what ``/v1/match`` finds (spec/sync.md §10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.core.manifest import signed_manifest_json
from tests.integration.harness import Node, free_ports, make_federation, wait_until
from tests.integration.test_federation import (
    LABELS,
    post,
    reaches,
    size_of,
    start_all,
    stop_all,
    submit,
)
from tests.integration.test_manifest_update import (
    MEMBERS,
    ROLES,
    genesis,
    peer_error,
    update,
    version_of,
)


async def matches_at(node: Node, n: int) -> list[str]:
    """Origins of the entries matching ``md5_item(n)`` at ``node``."""
    status, body = await post(
        node, "/v1/match", {"signals": [{"kind": "md5", "value": f"{n:032x}"}]}
    )
    assert status == 200, body
    return [m["origin"] for m in body["results"][0]["matches"]]


@pytest.mark.slow
async def test_member_moves_and_peers_follow_the_new_endpoint_without_restart(
    tmp_path: Path,
) -> None:
    fed = make_federation(tmp_path, MEMBERS, loopback=True, roles=ROLES)
    assert fed.steward is not None
    nodes = {m: Node(fed.members[m]) for m in MEMBERS}
    police, hotline, platform = (nodes[m] for m in MEMBERS)
    others = (hotline, platform)
    await start_all(*nodes.values())
    pids = {n.spec.member_id: n.proc.pid for n in others if n.proc is not None}
    try:
        await submit(police, 0, 2)
        for node in others:
            await wait_until(reaches(node, "police", 2), what=f"police's entries at {node.url}")

        # police moves its node to another port (its own listen address: a restart of police
        # alone); the manifest in force still names the old one
        old_url = police.url
        stop_all(police)
        (new_port,) = free_ports(1)
        config = police.spec.config
        old_listen = f'listen = "{old_url.removeprefix("http://")}"'
        assert old_listen in config.read_text()
        config.write_text(
            config.read_text().replace(old_listen, f'listen = "127.0.0.1:{new_port}"')
        )
        await start_all(police)
        new_url = f"http://127.0.0.1:{new_port}"
        assert police.url == new_url

        # an entry submitted at the new address rings the others, who cannot fetch it from
        # the old one: without the update nobody gets it
        await submit(police, 10, 1)

        async def pull_failed() -> bool:
            error = await peer_error(hotline, "police")
            return error is not None and "peer_unreachable" in error

        await wait_until(pull_failed, what="hotline failing to reach police at its old address")
        assert await size_of(hotline, "police") == 2

        # the stewards publish the new endpoint; police's admin posts it, it spreads by push
        members = tuple(
            m.model_copy(update={"endpoint": new_url}) if m.id == "police" else m
            for m in genesis(fed).manifest.members
        )
        v2 = update(fed, 2, [fed.steward], members=members)
        status, body = await post(police, "/v1/manifest", signed_manifest_json(v2))
        assert (status, body) == (200, {"version": 2, "outcome": "accepted"})

        async def everywhere() -> bool:
            return all([await version_of(n) == 2 for n in nodes.values()])

        await wait_until(everywhere, what="v2 at every node")
        for node in others:
            await wait_until(reaches(node, "police", 3), what=f"the moved entry at {node.url}")
            assert await matches_at(node, 10) == ["police"]

        # and the doorbell path follows too: a later entry arrives without anyone restarting
        await submit(police, 11, 1)
        for node in others:
            await wait_until(reaches(node, "police", 4), what=f"a later entry at {node.url}")
            assert await matches_at(node, 11) == ["police"]
        assert {n.spec.member_id: n.proc.pid for n in others if n.proc is not None} == pids
        assert all(n.proc is not None and n.proc.poll() is None for n in others)
    finally:
        stop_all(*nodes.values())


BASE = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


def near(bits: int) -> str:
    """BASE with its lowest ``bits`` bits flipped: at Hamming distance ``bits``."""
    return f"{int(BASE, 16) ^ ((1 << bits) - 1):064x}"


async def pdq_matches(node: Node, value: str) -> list[int]:
    """Indexes of the entries matching PDQ ``value`` at the policy's default radius."""
    status, body = await post(node, "/v1/match", {"signals": [{"kind": "pdq", "value": value}]})
    assert status == 200, body
    return [m["index"] for m in body["results"][0]["matches"]]


async def test_new_pdq_threshold_changes_matches_without_restart(tmp_path: Path) -> None:
    fed = make_federation(tmp_path)
    assert fed.steward is not None
    node = Node(fed.members["police"])
    await start_all(node)
    try:
        assert node.proc is not None
        pid = node.proc.pid
        item = {"id": "pdq-0", "signal": {"kind": "pdq", "value": BASE, "quality": 90}}
        status, body = await post(
            node, "/v1/submissions", {"submissions": [item | {"labels": LABELS}]}
        )
        assert status == 201, body
        assert genesis(fed).manifest.policy.pdq_threshold == 31
        assert await pdq_matches(node, near(25)) == [0]

        policy = genesis(fed).manifest.policy.model_copy(update={"pdq_threshold": 20})
        v2 = update(fed, 2, [fed.steward], policy=policy)
        status, body = await post(node, "/v1/manifest", signed_manifest_json(v2))
        assert (status, body) == (200, {"version": 2, "outcome": "accepted"})
        assert await pdq_matches(node, near(25)) == []
        assert await pdq_matches(node, near(20)) == [0]
        assert node.proc.pid == pid
        assert node.proc.poll() is None  # the same process throughout
    finally:
        stop_all(node)
