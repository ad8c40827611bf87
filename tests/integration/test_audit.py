"""The auditor against a real ``hashfed serve`` node: honest pass, bundles, a tampered database,
back-dated entries beyond a suspension at a log size.

Everything runs as the operator would: ``python -m federation audit`` and ``log export`` as
subprocesses against a node on loopback with its own SQLite file.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from federation.core.manifest import parse_signed_manifest, sign_manifest, signed_manifest_json
from tests.integration.harness import REPO, Federation, Node, client, make_federation
from tests.integration.test_manifest_update import thief_appends

LABELS = {"categories": ["csam"], "severity": "high", "confirmed_by": "police"}


def hashfed(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHFED_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(  # noqa: S603 - fixed argv, our own interpreter
        [sys.executable, "-m", "federation", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def report_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr
    value: dict[str, Any] = json.loads(lines[-1])
    return value


def fail_codes(report: dict[str, Any]) -> set[str]:
    return {f["code"] for o in report["origins"] for f in o["findings"] if f["level"] == "fail"}


async def submit(node: Node, count: int) -> None:
    items = [
        {
            "id": f"item-{n}",
            "signal": {"kind": "pdq", "value": f"{n + 1:064x}", "quality": 90},
            "labels": LABELS,
        }
        for n in range(count)
    ]
    async with client(node) as signed:
        for start in range(0, count, 20):
            body = {"submissions": items[start : start + 20]}
            url = f"{node.url}/v1/submissions"
            async with signed.request("POST", url, json=body) as r:
                assert r.status == 201, await r.text()


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[tuple[Federation, Node]]:
    federation = make_federation(tmp_path, ("police",))
    node = Node(federation.members["police"]).start()
    try:
        asyncio.run(submit(node, 45))
        yield federation, node
    finally:
        node.stop()


def test_honest_node_passes_then_bundles_pass_offline(
    fed: tuple[Federation, Node], tmp_path: Path
) -> None:
    federation, node = fed
    state = tmp_path / "state.json"
    result = hashfed(
        "audit",
        "--manifest",
        federation.manifest,
        node.url,
        "--state",
        state,
        "--json",
        "--workers",
        "2",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = report_of(result)
    assert report["verdict"] == "pass"
    police = next(o for o in report["origins"] if o["member_id"] == "police")
    assert police["size"] == 45
    assert police["entries_by_kind"] == {"submission": 45}
    assert json.loads(state.read_text())["origins"]["police"]["size"] == 45

    bundle = tmp_path / "node.bundle.gz"
    exported = hashfed("log", "export", "--node", node.url, "--out", bundle)
    assert exported.returncode == 0, exported.stderr
    local = tmp_path / "local.bundle"
    exported = hashfed("log", "export", "--config", node.spec.config, "--out", local)
    assert exported.returncode == 0, exported.stderr
    for path in (bundle, local):
        offline = hashfed(
            "audit",
            "--manifest",
            federation.manifest,
            "--bundle",
            path,
            "--no-state",
            "--json",
            "--workers",
            "1",
        )
        assert offline.returncode == 0, offline.stdout + offline.stderr
        assert report_of(offline)["verdict"] == "pass"


def test_tampered_sqlite_leaf_fails_with_evidence(
    fed: tuple[Federation, Node], tmp_path: Path
) -> None:
    federation, node = fed
    node.stop()
    db = node.spec.config.parent / "node.db"
    with sqlite3.connect(db) as conn:
        (leaf,) = conn.execute("SELECT leaf FROM entries WHERE idx = 7").fetchone()
        tampered = bytes(leaf).replace(b'"high"', b'"medium"')
        assert tampered != bytes(leaf)
        conn.execute("UPDATE entries SET leaf = ? WHERE idx = 7", (tampered,))
    node.start()
    result = hashfed("audit", "--manifest", federation.manifest, node.url, "--no-state", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = report_of(result)
    assert report["verdict"] == "fail"
    assert fail_codes(report) == {"bad_entry_signature", "root_mismatch"}
    police = next(o for o in report["origins"] if o["member_id"] == "police")
    bad = next(f for f in police["findings"] if f["code"] == "bad_entry_signature")
    assert bad["evidence"]["index"] == 7
    text = hashfed("audit", "--manifest", federation.manifest, node.url, "--no-state")
    assert text.returncode == 1
    assert "bad_entry_signature" in text.stdout
    assert "verdict: fail" in text.stdout


def test_unreachable_node_exits_3(fed: tuple[Federation, Node]) -> None:
    federation, _ = fed
    result = hashfed("audit", "--manifest", federation.manifest, "http://127.0.0.1:9", "--no-state")
    assert result.returncode == 3, result.stdout + result.stderr


def suspend_police(federation: Federation, path: Path, **suspension: int) -> Path:
    """A manifest like the federation's with police suspended as given, signed and written."""
    assert federation.steward is not None
    base = parse_signed_manifest(federation.manifest.read_bytes()).manifest
    members = tuple(
        m.model_copy(update={"status": "suspended", **suspension}) if m.id == "police" else m
        for m in base.members
    )
    signed = sign_manifest(base.model_copy(update={"members": members}), [federation.steward])
    path.write_text(json.dumps(signed_manifest_json(signed)))
    return path


def test_back_dated_entries_beyond_suspended_size_fail(
    fed: tuple[Federation, Node], tmp_path: Path
) -> None:
    """A thief with police's log key appends two entries back-dated an hour; a suspension by
    time misses them, one at the size the stewards vouch for (45) does not."""
    federation, node = fed
    node.stop()
    now = int(time.time())
    asyncio.run(thief_appends(node.spec, now - 3600, 2))
    node.start()

    # now + 1: the fixture's honest entries may carry this very second as `created`, and the
    # rule refuses entries created at or after suspended_at.
    by_time = suspend_police(federation, tmp_path / "by-time.json", suspended_at=now + 1)
    result = hashfed("audit", "--manifest", by_time, node.url, "--no-state", "--json")
    assert result.returncode == 0, result.stdout + result.stderr  # the gap

    by_size = suspend_police(federation, tmp_path / "by-size.json", suspended_size=45)
    result = hashfed(
        "audit", "--manifest", by_size, node.url, "--no-state", "--json", "--workers", "2"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = report_of(result)
    assert fail_codes(report) == {"entry_after_suspension"}
    police = next(o for o in report["origins"] if o["member_id"] == "police")
    assert police["size"] == 47
    found = [f for f in police["findings"] if f["code"] == "entry_after_suspension"]
    assert [f["evidence"]["index"] for f in found] == [45, 46]
    assert {f["evidence"]["suspended_size"] for f in found} == {45}
    assert {f["evidence"]["created"] for f in found} == {now - 3600}
