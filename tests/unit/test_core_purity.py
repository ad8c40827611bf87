"""``federation.core`` stays pure: no web framework, database or logging library, and only
``keys.py`` touches the signature library (ARCHITECTURE.md "Layers", STYLE.md "Shape")."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "federation" / "core"
FORBIDDEN = ("aiohttp", "sqlalchemy", "structlog", "aiosqlite", "asyncpg", "alembic")
CRYPTO = ("nacl", "cryptography")
CRYPTO_MODULE = "keys.py"


def _core_files() -> list[Path]:
    files = sorted(CORE.rglob("*.py"))
    assert any(f.name == "entries.py" for f in files)  # the walk really found core
    return files


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            roots.add(node.args[0].value.split(".")[0])
    return roots


def test_core_sources_import_nothing_impure() -> None:
    offenders = {
        f.name: sorted(_imported_roots(f) & set(FORBIDDEN))
        for f in _core_files()
        if _imported_roots(f) & set(FORBIDDEN)
    }
    assert offenders == {}


def test_only_keys_module_touches_signature_primitives() -> None:
    offenders = {
        f.name: sorted(_imported_roots(f) & set(CRYPTO))
        for f in _core_files()
        if f.name != CRYPTO_MODULE and _imported_roots(f) & set(CRYPTO)
    }
    assert offenders == {}


def test_importing_all_of_core_loads_nothing_impure() -> None:
    """Transitive check: importing every core module in a fresh interpreter pulls in none of
    the forbidden packages (catches an impure import through a non-core helper)."""
    script = f"""
import importlib, json, pkgutil, sys
import federation.core as core
names = sorted(m.name for m in pkgutil.walk_packages(core.__path__, "federation.core."))
for name in names:
    importlib.import_module(name)
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({FORBIDDEN!r}))
print(json.dumps({{"modules": names, "loaded": loaded}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "federation.core.entries" in report["modules"]
    assert "federation.core.manifest" in report["modules"]
    assert report["loaded"] == []
