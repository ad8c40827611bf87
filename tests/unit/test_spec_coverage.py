"""Docs coverage: every route, error code and signature domain in the code appears in spec/.

A second implementation is written from ``spec/``, so anything the node can put on the wire
(or in a CLI/audit report) that ``spec/`` does not name is an interoperability bug.  The
tests here fail as soon as someone adds a route, an error code or a signature domain without
documenting it:

- routes: every route the real app registers is in ``spec/openapi.yaml`` *and* in the endpoint
  table of ``spec/protocol.md`` (§7), and every row of that table is a real or specified route;
- error codes: every stable code found in ``federation/`` by an AST scan appears in some
  ``spec/*.md`` as a whole word;
- domains: every ``hashfed/v1/...`` signature-domain constant of ``federation/core/keys.py``
  appears in ``spec/protocol.md``.

The scanner finds codes written as ``code="..."`` keyword arguments, class-level
``code = "..."`` attributes, module constants passed as ``code=NAME`` / ``code=mod.NAME``, and
literals passed positionally to a helper whose parameter is named ``code`` (e.g.
``_fail("malformed_hash", ...)``).  Its own tests run it on a synthetic package.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from federation.config import load_config
from federation.node import open_context
from federation.server.app import MATCH_ROUTES_MODULE, create_app
from tests.integration.harness import make_federation

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "spec"
PACKAGE = REPO / "federation"
METHODS = ("get", "post", "put", "patch", "delete")

UNDOCUMENTED_ALLOWED: frozenset[str] = frozenset()
"""Codes that never leave the process and so need no spec entry.

Empty on purpose: every code the scan finds can reach a caller — as an HTTP error body, a
CLI message next to its exit code, an audit finding or ``/v1/status``'s ``last_error`` — so
each one is in ``spec/protocol.md`` §14.  Add a code here only with a comment saying why no
one outside the process can ever see it.
"""

PENDING_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        # Specified in spec/protocol.md while their code lands (spec/sync.md §9, §10, §12);
        # the rows are tolerated only while neither the app nor spec/openapi.yaml has them.
        ("post", "/v1/witness/add-checkpoint"),
        ("post", "/v1/manifest"),
        ("get", "/v1/manifests"),
        ("post", "/v1/admin/unfreeze"),
    }
)


# -- the error-code scanner --------------------------------------------------------------------


@dataclass
class _Module:
    """What the scanner needs to know about one module."""

    tree: ast.Module
    consts: dict[str, str] = field(default_factory=dict)
    """Module-level string constants."""
    code_params: dict[str, int] = field(default_factory=dict)
    """Functions and methods with a ``code`` parameter -> its positional index."""
    names: dict[str, tuple[str, str]] = field(default_factory=dict)
    """``from M import N as A``: A -> (M, N)."""
    modules: dict[str, str] = field(default_factory=dict)
    """Aliases of imported modules: A -> dotted module name."""


def _string(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _code_position(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int | None:
    names = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)]
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    return names.index("code") if "code" in names else None


def _load(path: Path, name: str, known: set[str]) -> _Module:
    module = _Module(ast.parse(path.read_text("utf-8"), filename=str(path)))
    value: ast.expr | None
    for stmt in module.tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign):
            target, value = stmt.target, stmt.value
        else:
            continue
        text = _string(value)
        if isinstance(target, ast.Name) and text is not None:
            module.consts[target.id] = text
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(module.tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            position = _code_position(node)
            if position is not None:
                module.code_params[node.name] = position
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                local = alias.asname or alias.name
                if f"{base}.{alias.name}" in known:
                    module.modules[local] = f"{base}.{alias.name}"
                else:
                    module.names[local] = (base, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    module.modules[alias.asname] = alias.name
    return module


def scan_error_codes(package_dir: Path) -> dict[str, set[str]]:
    """Every stable error code under ``package_dir`` -> the files that use it."""
    root = package_dir.parent
    paths = sorted(package_dir.rglob("*.py"))
    names = {
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
        for p in paths
    }
    known = set(names)
    modules = {name: _load(path, name, known) for name, path in names.items()}
    found: dict[str, set[str]] = defaultdict(set)

    def resolve(mod: _Module, node: ast.AST) -> str | None:
        text = _string(node)
        if text is not None:
            return text
        if isinstance(node, ast.Name):
            if node.id in mod.consts:
                return mod.consts[node.id]
            source, name = mod.names.get(node.id, ("", ""))
            other = modules.get(source)
            return other.consts.get(name) if other else None
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            other = modules.get(mod.modules.get(node.value.id, ""))
            return other.consts.get(node.attr) if other else None
        return None

    def code_position(mod: _Module, func: ast.AST) -> int | None:
        if isinstance(func, ast.Name):
            if func.id in mod.code_params:
                return mod.code_params[func.id]
            source, name = mod.names.get(func.id, ("", ""))
            other = modules.get(source)
            return other.code_params.get(name) if other else None
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            if func.value.id in ("self", "cls"):
                return mod.code_params.get(func.attr)
            other = modules.get(mod.modules.get(func.value.id, ""))
            return other.code_params.get(func.attr) if other else None
        return None

    for name, mod in modules.items():
        where = str(names[name].relative_to(root))
        for node in ast.walk(mod.tree):
            candidates: list[ast.AST] = []
            if isinstance(node, ast.Call):
                candidates += [kw.value for kw in node.keywords if kw.arg == "code"]
                position = code_position(mod, node.func)
                if position is not None and position < len(node.args):
                    candidates.append(node.args[position])
            elif isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                        target, value = stmt.targets[0], stmt.value
                    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                        target, value = stmt.target, stmt.value
                    else:
                        continue
                    if isinstance(target, ast.Name) and target.id == "code":
                        candidates.append(value)
            for candidate in candidates:
                code = resolve(mod, candidate)
                if code is not None:
                    found[code].add(where)
    return dict(found)


def spec_text(pattern: str = "*.md") -> str:
    """All spec documents matching ``pattern``, concatenated."""
    return "\n".join(p.read_text("utf-8") for p in sorted(SPEC.glob(pattern)))


def undocumented(codes: dict[str, set[str]], text: str) -> dict[str, set[str]]:
    """The codes that do not appear in ``text`` as a whole word (``a_b`` is not in ``a_bc``)."""
    return {
        code: where
        for code, where in codes.items()
        if not re.search(rf"(?<![\w-]){re.escape(code)}(?![\w-])", text)
    }


def endpoint_table(text: str) -> set[tuple[str, str]]:
    """(method, path) of every row ``| GET | `/path` | ...`` in protocol.md's endpoint table."""
    rows = re.findall(r"^\| (GET|POST|PUT|PATCH|DELETE) \| `(/[^`]*)` \|", text, re.MULTILINE)
    return {(method.lower(), path) for method, path in rows}


def domain_constants(path: Path) -> set[str]:
    """The ``hashfed/v1/...`` domain prefixes defined in ``path`` (without the final LF)."""
    domains = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        value = node.value if isinstance(node, ast.Constant) else None
        if isinstance(value, bytes) and value.startswith(b"hashfed/v1/"):
            domains.add(value.decode("ascii").rstrip("\n"))
    return domains


# -- the scanner on a synthetic package ----------------------------------------------------------


SYNTHETIC = {
    "__init__.py": "",
    "codes.py": 'from typing import Final\nSHARED: Final = "shared_const_code"\n',
    "errors.py": (
        "class Base(Exception):\n"
        '    code = "base_code"\n'
        "    def __init__(self, message, *, code=None):\n"
        "        super().__init__(message)\n"
        "class Branch(Base):\n"
        '    code: str = "branch_code"\n'
    ),
    "use.py": (
        "from typing import Final\n"
        "from pkg import codes as C\n"
        "from pkg.codes import SHARED\n"
        "from pkg.errors import Base\n"
        'LOCAL: Final = "local_const_code"\n'
        'NOT_A_CODE = "never_passed_as_code"\n'
        "def _fail(code, message):\n"
        "    return Base(message, code=code)\n"
        "class Parser:\n"
        "    def fail(self, why):\n"
        "        return Base(why)\n"
        "    def bad(self, code, why):\n"
        "        return Base(why, code=code)\n"
        "    def run(self, other):\n"
        '        self.fail("a message, not a code")\n'
        '        self.bad("method_positional_code", "x")\n'
        '        other.fail("unrelated object")\n'
        "def f():\n"
        '    raise Base("m", code="keyword_code")\n'
        "def g():\n"
        "    raise Base('m', code=LOCAL)\n"
        "def h():\n"
        "    raise Base('m', code=C.SHARED)\n"
        "def i():\n"
        "    raise Base('m', code=SHARED)\n"
        "def j():\n"
        '    raise _fail("positional_code", "m")\n'
    ),
}
SYNTHETIC_CODES = {
    "base_code",
    "branch_code",
    "local_const_code",
    "shared_const_code",
    "keyword_code",
    "positional_code",
    "method_positional_code",
}


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    package = tmp_path / "pkg"
    package.mkdir()
    for name, source in SYNTHETIC.items():
        (package / name).write_text(source)
    return package


def test_scanner_finds_every_way_a_code_is_written(synthetic: Path) -> None:
    found = scan_error_codes(synthetic)
    assert set(found) == SYNTHETIC_CODES
    assert found["keyword_code"] == {"pkg/use.py"}
    assert found["base_code"] == {"pkg/errors.py"}


def test_coverage_check_fails_for_a_new_undocumented_code(synthetic: Path) -> None:
    found = scan_error_codes(synthetic)
    documented = "`base_code`, `branch_code`, local_const_code and shared_const_code; keyword_code"
    missing = undocumented(found, documented)
    assert set(missing) == {"positional_code", "method_positional_code"}
    # a longer code that merely contains a documented one does not count
    assert undocumented({"keyword": {"x"}}, "keyword_code") == {"keyword": {"x"}}
    assert undocumented({"keyword": {"x"}}, "the `keyword` code") == {}


def test_endpoint_table_parser() -> None:
    text = "| GET | `/a/{b}` | x |\n| POST | `/c` | y |\n|GET|`/not-a-row`|\n| method | path |"
    assert endpoint_table(text) == {("get", "/a/{b}"), ("post", "/c")}


# -- the real code against spec/ -------------------------------------------------------------------


def test_scanner_sees_the_codes_it_should() -> None:
    """Guards the scanner itself: codes written in each of the ways it supports are found."""
    found = scan_error_codes(PACKAGE)
    for code in (
        "signature_missing",  # keyword literal (server/auth.py)
        "not_ready",  # class attribute (server/errors.py)
        "malformed_hash",  # positional literal to merkle._fail via a module constant
        "checkpoint_rollback",  # code=CONSTANT (core/replication.py)
        "split_view",  # positional F.SPLIT_VIEW to findings.fail (audit)
        "body_too_large",  # positional literal to server.errors._error
    ):
        assert code in found, code
    assert len(found) > 100


def test_every_error_code_is_documented_in_spec() -> None:
    found = scan_error_codes(PACKAGE)
    missing = undocumented(found, spec_text())
    missing = {code: where for code, where in missing.items() if code not in UNDOCUMENTED_ALLOWED}
    assert missing == {}, "error codes used in federation/ but absent from spec/*.md"
    stale = UNDOCUMENTED_ALLOWED - set(found)
    assert stale == set(), "allowlisted codes no longer in the code"


def test_every_error_code_is_in_the_protocol_error_table() -> None:
    """protocol.md §14 is the one table a second implementation reads."""
    found = scan_error_codes(PACKAGE)
    table = "\n".join(
        line for line in spec_text("protocol.md").splitlines() if line.startswith("|")
    )
    missing = {code for code in found if f"`{code}`" not in table}
    assert missing - UNDOCUMENTED_ALLOWED == set()


def test_every_signature_domain_is_in_protocol() -> None:
    domains = domain_constants(PACKAGE / "core" / "keys.py")
    assert "hashfed/v1/entry" in domains
    text = spec_text("protocol.md")
    assert {d for d in domains if f"`{d}\\n`" not in text} == set()


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[web.Application]:
    fed = make_federation(tmp_path)
    ctx = await open_context(load_config(fed.members["police"].config, env={}))
    yield create_app(ctx)
    await ctx.store.close()


def _openapi_routes() -> set[tuple[str, str]]:
    spec = yaml.safe_load((SPEC / "openapi.yaml").read_text("utf-8"))
    return {(m, path) for path, item in spec["paths"].items() for m in item if m in METHODS}


async def test_every_served_route_is_in_openapi_and_protocol(app: web.Application) -> None:
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert ("get", "/v1/logs/{member}/checkpoint") in served
    table = endpoint_table(spec_text("protocol.md"))
    assert served - _openapi_routes() == set(), "served but not in spec/openapi.yaml"
    assert served - table == set(), "served but not in spec/protocol.md's endpoint table"
    specified = served | _openapi_routes() | PENDING_ROUTES
    if importlib.util.find_spec(MATCH_ROUTES_MODULE) is None:
        specified.add(("post", "/v1/match"))
    assert table - specified == set(), "protocol.md lists routes nobody serves or specifies"
