"""Run ``hashfed`` as a user does: ``python -m federation`` in a subprocess, in a given dir."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]


def hashfed(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``hashfed ARGS`` in ``cwd`` and return the finished process (never raises)."""
    return subprocess.run(
        [sys.executable, "-m", "federation", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )


def ok(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run and require exit 0 (the assertion message shows stderr)."""
    out = hashfed(*args, cwd=cwd)
    assert out.returncode == 0, f"hashfed {args} -> {out.returncode}: {out.stderr}"
    return out


def ok_json(*args: str | Path, cwd: Path) -> dict[str, Any]:
    """Run with exit 0 and parse stdout as exactly one JSON object."""
    out = ok(*args, cwd=cwd)
    lines = out.stdout.splitlines()
    assert len(lines) == 1, out.stdout
    value = json.loads(lines[0])
    assert isinstance(value, dict)
    return value


def fails(code: int, *args: str | Path, cwd: Path) -> str:
    """Run, require exit ``code`` and one error line on stderr; return that line."""
    out = hashfed(*args, cwd=cwd)
    assert out.returncode == code, f"hashfed {args} -> {out.returncode}: {out.stderr}"
    lines = out.stderr.strip().splitlines()
    assert lines, "no error message"
    return lines[-1]
