"""``hashfed hash`` as a user runs it: a real subprocess, real files, per-file failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PDQ_DIR = REPO / ".." / "shared" / "images" / "pdq"
ORIG_PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


def hashfed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "federation", "hash", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


@pytest.fixture
def orig() -> Path:
    path = PDQ_DIR / "bridge-mods" / "aaa-orig.jpg"
    if not path.exists():
        pytest.skip(f"shared PDQ images not found at {PDQ_DIR}")
    return path


def test_text_line_per_file(orig: Path) -> None:
    wee = PDQ_DIR / "misc" / "wee.jpg"
    out = hashfed(str(orig), str(wee))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2
    pdq, quality, md5, sha256, path = lines[0].split(maxsplit=4)
    assert (pdq, quality, path) == (ORIG_PDQ, "100", str(orig))
    assert len(md5) == 32
    assert len(sha256) == 64
    assert lines[1].endswith(str(wee))


def test_json_with_dihedral(orig: Path) -> None:
    out = hashfed("--json", "--dihedral", str(orig))
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["pdq"] == ORIG_PDQ
    assert record["quality"] == 100
    assert record["path"] == str(orig)
    assert record["dihedral"]["original"] == ORIG_PDQ
    assert len(record["dihedral"]) == 8
    assert not record["low_quality"]


def test_failures_reported_and_others_still_print(orig: Path, tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not an image")
    missing = tmp_path / "missing.jpg"
    out = hashfed("--json", str(junk), str(orig), str(missing))
    assert out.returncode == 1
    assert [json.loads(line)["pdq"] for line in out.stdout.splitlines()] == [ORIG_PDQ]
    errors = out.stderr.splitlines()
    assert len(errors) == 2
    assert str(junk) in errors[0]
    assert "image_unreadable" in errors[0]
    assert str(missing) in errors[1]
    assert "file_unreadable" in errors[1]
