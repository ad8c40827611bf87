"""The client commands as a user runs them (``python -m federation ...`` subprocesses) against a
real ``hashfed serve`` node: submit (files, hex, CSV) with saved receipts that verify offline,
idempotent retries, match (exact, near, no match), retract, opinion, status, node selection
(flags, environment, node.toml) and the exit codes for a down node (3) and bad input (2)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from federation.demo.images import demo_images
from federation.keyfile import save_private_key
from tests.integration.harness import Node, free_ports, make_federation

REPO = Path(__file__).resolve().parents[2]
LABEL = ["--label", "csam", "--severity", "high", "--confirmed-by", "police"]


@dataclass(frozen=True)
class Setup:
    node: Node
    work: Path
    config: Path
    manifest: Path
    flags: tuple[str, ...]
    """--node/--key/--key-id/--member for the police CLI client."""


def run(
    setup: Setup, *args: str | Path, env: dict[str, str] | None = None, flags: bool = True
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "federation", *map(str, args)]
    if flags:
        argv += setup.flags
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd=setup.work,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", **(env or {})},
        timeout=120,
        check=False,
    )


def ok(setup: Setup, *args: str | Path, **kw: Any) -> str:
    out = run(setup, *args, **kw)
    assert out.returncode == 0, f"{args} -> {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out.stdout


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("fed")
    fed = make_federation(root, loopback=True)
    spec = fed.members["police"]
    cli = spec.clients["cli"]
    key_file = spec.config.parent / "keys" / "police-cli.key"  # where `hashfed init` puts it
    save_private_key(key_file, cli.key)
    work = root / "work"
    work.mkdir()
    images = demo_images(7)
    for name in ("reference", "blurred", "resized", "unrelated"):
        (work / f"{name}.png").write_bytes(getattr(images, name))
    node = Node(spec).start()
    flags = ("--node", node.url, "--key", str(key_file), "--key-id", cli.key_id)
    try:
        yield Setup(node, work, spec.config, fed.manifest, (*flags, "--member", "police"))
    finally:
        node.stop()


def test_submit_file_saves_receipts_that_verify_and_retry_is_idempotent(setup: Setup) -> None:
    first = json_lines(ok(setup, "submit", "reference.png", *LABEL, "--json"))
    assert [r["kind"] for r in first] == ["pdq", "md5", "sha256"]
    assert all(not r["existing"] and r["origin"] == "police" for r in first)
    for record in first:
        receipt = Path(setup.work / record["receipt_file"])
        assert receipt.name == f"{record['id']}.tlog-proof"
        checked = json.loads(
            ok(
                setup,
                "verify-receipt",
                receipt,
                "--manifest",
                setup.manifest,
                "--json",
                flags=False,
            )
        )
        assert checked["index"] == record["index"]
        assert checked["signal_kind"] == record["kind"]
    again = json_lines(ok(setup, "submit", "reference.png", *LABEL, "--json"))
    assert [r["existing"] for r in again] == [True, True, True]
    assert [r["index"] for r in again] == [r["index"] for r in first]
    table = ok(setup, "submit", "reference.png", *LABEL)
    assert "existing" in table
    assert "reference.png" in table


def test_submit_hex_and_csv(setup: Setup) -> None:
    md5 = "ab" * 16
    (record,) = json_lines(ok(setup, "submit", "--md5", md5, *LABEL, "--json", "--no-receipts"))
    assert record["id"] == f"md5-{md5}"
    assert record["receipt_file"] is None
    pdq = "f" * 32 + "0" * 32
    (record,) = json_lines(ok(setup, "submit", "--pdq", pdq, "--quality", "90", *LABEL, "--json"))
    assert record["kind"] == "pdq"
    csv_file = setup.work / "bulk.csv"
    csv_file.write_text(
        "kind,value,labels,severity,confirmed_by\n"
        f"md5,{'01' * 16},csam;ncii,medium,hotline\n"
        f"sha256,{'02' * 32},,,\n"
    )
    records = json_lines(ok(setup, "submit", "--from-csv", csv_file, *LABEL, "--json"))
    assert [r["kind"] for r in records] == ["md5", "sha256"]
    assert records[1]["index"] == records[0]["index"] + 1


def test_match_exact_near_and_no_match(setup: Setup) -> None:
    ok(setup, "submit", "reference.png", *LABEL, "--no-receipts")
    found = json_lines(
        ok(setup, "match", "reference.png", "blurred.png", "resized.png", "unrelated.png", "--json")
    )
    exact, blurred, resized, unrelated = (q["matches"] for q in found)
    assert exact[0]["distance"] == 0
    assert {m["origin"] for m in exact} == {"police"}
    assert blurred[0]["distance"] <= 31
    assert resized[0]["distance"] <= 31
    assert resized[0]["labels"]["categories"] == ["csam"]
    assert unrelated == []
    table = ok(setup, "match", "blurred.png", "unrelated.png")
    lines = table.splitlines()
    assert lines[0].split() == [
        "query",
        "origin",
        "index",
        "distance",
        "transform",
        "labels",
        "status",
    ]
    assert any(line.startswith("blurred.png") and "police" in line for line in lines)
    assert any(line.startswith("unrelated.png") and "no match" in line for line in lines)


def test_match_by_hex(setup: Setup) -> None:
    md5 = "cd" * 16
    ok(setup, "submit", "--md5", md5, *LABEL, "--no-receipts")
    (hit,) = json_lines(ok(setup, "match", md5, "--json"))
    assert hit["matches"][0]["distance"] == 0
    (miss,) = json_lines(ok(setup, "match", "md5:" + "ce" * 16, "--json"))
    assert miss["matches"] == []


def test_retract_then_no_match(setup: Setup) -> None:
    md5 = "ef" * 16
    (record,) = json_lines(ok(setup, "submit", "--md5", md5, *LABEL, "--json"))
    assert json_lines(ok(setup, "match", md5, "--json"))[0]["matches"]
    (retraction,) = json_lines(
        ok(setup, "retract", "--receipt", record["receipt_file"], "--reason", "error", "--json")
    )
    assert retraction["kind"] == "retraction"
    assert retraction["target"]["index"] == record["index"]
    assert retraction["target"]["leaf_hash"] == record["leaf_hash"]
    assert json_lines(ok(setup, "match", md5, "--json"))[0]["matches"] == []
    target = f"police:{record['index']}:{record['leaf_hash']}"
    again = json_lines(ok(setup, "retract", "--target", target, "--reason", "error", "--json"))
    assert again[0]["existing"] is True


def test_opinion_marks_the_entry_disputed(setup: Setup) -> None:
    md5 = "12" * 16
    (record,) = json_lines(ok(setup, "submit", "--md5", md5, *LABEL, "--json"))
    args = ["--origin", "police", "--index", str(record["index"]), "--leaf-hash"]
    out = ok(setup, "opinion", *args, record["leaf_hash"], "--verdict", "false_positive")
    assert "opinion" in out
    (hit,) = json_lines(ok(setup, "match", md5, "--json"))
    assert hit["matches"][0]["status"] == "disputed"


def test_status(setup: Setup) -> None:
    ok(setup, "submit", "--md5", "34" * 16, *LABEL, "--no-receipts")
    status = json.loads(ok(setup, "status", "--json"))
    assert status["member"] == "police"
    assert status["log"]["size"] >= 1
    table = ok(setup, "status")
    assert "member" in table
    assert "police" in table
    assert f"size {status['log']['size']}" in table


def test_node_from_config_and_from_environment(setup: Setup) -> None:
    config = ["--config", str(setup.config)]
    status = json.loads(ok(setup, "status", "--json", *config, flags=False))
    assert status["member"] == "police"
    flags = dict(zip(setup.flags[::2], setup.flags[1::2], strict=True))
    env = {
        "HASHFED_NODE": flags["--node"],
        "HASHFED_CLIENT_KEY": flags["--key"],
        "HASHFED_CLIENT_KEY_ID": flags["--key-id"],
        "HASHFED_MEMBER": flags["--member"],
    }
    assert json.loads(ok(setup, "status", "--json", env=env, flags=False))["member"] == "police"


def test_node_down_is_exit_3(setup: Setup) -> None:
    (port,) = free_ports(1)
    flags = ["--key", setup.flags[3], "--key-id", "police-cli", "--member", "police"]
    out = run(setup, "status", "--node", f"http://127.0.0.1:{port}", *flags, flags=False)
    assert out.returncode == 3, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "cannot reach node" in lines[0]
    out = run(
        setup,
        "submit",
        "--md5",
        "56" * 16,
        *LABEL,
        "--node",
        f"http://127.0.0.1:{port}",
        *flags,
        flags=False,
    )
    assert out.returncode == 3, out.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["submit", "--md5", "xyz", *LABEL], "md5 hash must be 32 hex"),
        (["submit", "--md5", "78" * 16], "--label"),
        (["submit", "--pdq", "ab" * 32, *LABEL], "quality"),
        (["submit", "missing.png", *LABEL], "missing.png"),
        (["submit", "--pdq", "ab" * 32, "--quality", "10", *LABEL], "pdq_quality_too_low"),
        (["match", "nothex"], "neither a file"),
        (["retract", "--reason", "error"], "name the target"),
        (["retract", "--target", "police:99999:" + "00" * 32, "--reason", "error"], "not_found"),
    ],
)
def test_bad_input_is_exit_2(setup: Setup, args: list[str], needle: str) -> None:
    out = run(setup, *args)
    assert out.returncode == 2, f"{out.returncode}: {out.stderr}"
    assert needle in out.stderr
    assert out.stdout == ""
