"""``hashfed audit --bundle`` through the real CLI entry point: table, JSON, watch, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from federation.cli.main import main
from federation.core.manifest import sign_manifest, signed_manifest_json
from tests.unit.audit.fed import make_manifest, seeded
from tests.unit.audit.test_bundle_state import write_bundle
from tests.unit.audit.test_runner import honest_logs


def manifest_file(tmp_path: Path) -> Path:
    signed = sign_manifest(make_manifest(), [seeded("audit test: steward", "steward")])
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(signed_manifest_json(signed)))
    return path


def test_bundle_pass_prints_table_and_saves_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "b.jsonl"
    write_bundle(bundle, honest_logs())
    state = tmp_path / "state.json"
    argv = ["audit", "--manifest", str(manifest_file(tmp_path)), "--bundle", str(bundle)]
    code = main([*argv, "--state", str(state), "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "verdict: pass" in out
    assert out.splitlines()[0].split()[:3] == ["origin", "size", "from"]
    assert json.loads(state.read_text())["origins"]["police"]["size"] == 31


def test_watch_exits_1_with_alert_on_first_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = honest_logs()
    logs["police"].leaves[4] = logs["police"].leaves[4].replace(b'"high"', b'"low"')
    bundle = tmp_path / "b.jsonl"
    write_bundle(bundle, logs)
    code = main(
        [
            "audit",
            "--manifest",
            str(manifest_file(tmp_path)),
            "--bundle",
            str(bundle),
            "--no-state",
            "--json",
            "--watch",
            "--interval",
            "0",
            "--workers",
            "1",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    report = json.loads(captured.out.strip().splitlines()[-1])
    assert report["verdict"] == "fail"
    codes = {f["code"] for o in report["origins"] for f in o["findings"]}
    assert "bad_entry_signature" in codes
    assert "ALERT" in captured.err


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = str(manifest_file(tmp_path))
    assert main(["audit", "--manifest", manifest, "--no-state"]) == 2
    assert main(["audit", "--manifest", manifest, "--workers", "0", "--no-state"]) == 2
    assert "NODE_URL" in capsys.readouterr().err
