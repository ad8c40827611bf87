"""``hashfed demo`` end to end as a user runs it: five real nodes, every step held, exit 0;
and interrupted with SIGTERM it stops its nodes and removes its directory (exit 130)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STEPS = (
    "draw the demo images",
    "create keys and a signed manifest",
    "start 5 nodes",
    "police unit hashes the reference image locally and submits it",
    "platform-a blocks the original and edited copies",
    "platform-b blocks the original and edited copies",
    "the platforms do not block an unrelated image",
    "the receipt verifies offline",
    "the auditor verifies every member's log",
    "police unit retracts the hash",
    "the retracted hash stops matching everywhere",
    "stop the nodes",
)

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    return {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}


def test_demo_passes_every_step() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "federation", "demo"],
        capture_output=True, text=True, env=_env(), timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    step_lines = [line for line in out.stdout.splitlines() if line.startswith("[")]
    assert len(step_lines) == len(STEPS), out.stdout
    for number, (line, title) in enumerate(zip(step_lines, STEPS, strict=True), start=1):
        assert line.startswith(f"[  ok] {number:2d}. {title}"), line
        assert line.endswith(" s)"), line  # each step shows its timing
    assert "resized distance" in out.stdout
    assert "verdict pass" in out.stdout
    assert out.stdout.rstrip().splitlines()[-1].startswith("demo PASS")


def test_demo_json_and_keep(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "federation", "demo", "--json", "--keep"],
        capture_output=True, text=True, env=_env(), timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    steps, summary = records[:-1], records[-1]
    assert [s["status"] for s in steps] == ["ok"] * len(STEPS)
    assert summary["result"] == "pass"
    kept = Path(summary["directory"])
    try:
        assert (kept / "manifest.json").is_file()
        assert sorted(p.name for p in (kept / "receipts").iterdir())
        assert (kept / "police" / "node.toml").is_file()
    finally:
        import shutil

        shutil.rmtree(kept, ignore_errors=True)


def test_sigterm_stops_nodes_and_cleans_up() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "federation", "demo", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    assert proc.stdout is not None
    # Wait until the nodes are running (step 3 done), then terminate mid-scenario.
    deadline = time.monotonic() + 120
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if json.loads(line).get("step") == 3:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    records = [json.loads(x) for x in [*lines, *rest.splitlines()]]
    assert proc.returncode == 130, records
    summary = records[-1]
    assert summary["result"] == "interrupted"
    assert any(r.get("title") == "stop the nodes" for r in records)
    directory = Path(summary["directory"])
    assert not directory.exists()
    # No `hashfed serve` of that directory is left running.
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        assert str(directory) not in cmdline
