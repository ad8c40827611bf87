"""RFC 9162 Merkle hashing and verification against external vectors and fixed inputs.

- every transparency-dev inclusion/consistency vector (196 files) gives its ``wantErr``;
- the RFC 6962 reference tree (8 leaves): roots for sizes 0–8 and every PATH and PROOF are
  reproduced byte for byte by the reference implementation, the stored-hash log and the
  streaming RootBuilder;
- each verification failure carries its own stable code, and every code is in ``spec/``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from federation.core import merkle
from federation.core.merkle import (
    EMPTY_ROOT,
    RootBuilder,
    leaf_hash,
    node_hash,
    reference_consistency_proof,
    reference_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from federation.core.tlog import MemoryHashStore
from federation.errors import VerificationError

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO / ".." / "shared"
TD_DIR = SHARED / "vectors" / "merkle-transparency-dev" / "testdata"
REF_TREE = SHARED / "vectors" / "rfc6962-reference-tree.json"
TD_FILES = sorted(TD_DIR.glob("*/**/*.json")) if TD_DIR.is_dir() else []
TD_EXPECTED_COUNT = 196

needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason="../shared (external test vectors) is not checked out next to repo"
)


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


def _proof(value: list[str] | None) -> list[bytes]:
    return [_b64(p) for p in value or []]


@needs_shared
def test_all_transparency_dev_vectors_are_collected() -> None:
    # Guards against a moved or emptied directory silently turning the vector test into nothing.
    assert len(TD_FILES) == TD_EXPECTED_COUNT
    kinds = {f.relative_to(TD_DIR).parts[0] for f in TD_FILES}
    assert kinds == {"inclusion", "consistency"}


@pytest.mark.parametrize(
    "path", TD_FILES, ids=[str(f.relative_to(TD_DIR)) for f in TD_FILES] if TD_FILES else []
)
def test_transparency_dev_vector(path: Path) -> None:
    case: dict[str, Any] = json.loads(path.read_text())
    kind = path.relative_to(TD_DIR).parts[0]

    def run() -> None:
        if kind == "inclusion":
            verify_inclusion(
                _b64(case["leafHash"]),
                case["leafIdx"],
                case["treeSize"],
                _proof(case["proof"]),
                _b64(case["root"]),
            )
        else:
            verify_consistency(
                case["size1"],
                case["size2"],
                _proof(case["proof"]),
                _b64(case["root1"]),
                _b64(case["root2"]),
            )

    if case["wantErr"]:
        with pytest.raises(VerificationError) as info:
            run()
        assert info.value.code in merkle.ERROR_CODES
    else:
        run()


@pytest.fixture(scope="module")
def ref_tree() -> dict[str, Any]:
    if not REF_TREE.is_file():
        pytest.skip("../shared/vectors/rfc6962-reference-tree.json is absent")
    data: dict[str, Any] = json.loads(REF_TREE.read_text())
    return data


def _ref_leaves(ref_tree: dict[str, Any]) -> list[bytes]:
    return [bytes.fromhex(h) for h in ref_tree["leaf_hashes_hex"]]


def test_reference_tree_leaf_hashes(ref_tree: dict[str, Any]) -> None:
    got = [leaf_hash(bytes.fromhex(d)).hex() for d in ref_tree["leaf_inputs_hex"]]
    assert got == ref_tree["leaf_hashes_hex"]


def test_reference_tree_roots(ref_tree: dict[str, Any]) -> None:
    leaves = _ref_leaves(ref_tree)
    store = MemoryHashStore()
    builder = RootBuilder()
    roots = ref_tree["roots_by_size_hex"]
    assert sorted(map(int, roots)) == list(range(9))
    for size in range(9):
        want = roots[str(size)]
        assert root_from_leaf_hashes(leaves[:size]).hex() == want
        assert store.root().hex() == want
        assert builder.root().hex() == want
        if size < len(leaves):
            store.append(leaves[size])
            builder.append(leaves[size])


def test_reference_tree_inclusion_proofs(ref_tree: dict[str, Any]) -> None:
    leaves = _ref_leaves(ref_tree)
    store = MemoryHashStore()
    for h in leaves:
        store.append(h)
    cases = ref_tree["inclusion"]
    assert len(cases) == sum(range(1, 9))  # every (index, size) of the 8-leaf tree
    for case in cases:
        index, size = case["index"], case["size"]
        want = case["proof_hex"]
        assert [p.hex() for p in reference_inclusion_proof(index, leaves[:size])] == want
        proof = store.inclusion_proof(index, size)
        assert [p.hex() for p in proof] == want
        verify_inclusion(leaves[index], index, size, proof, store.root(size))


def test_reference_tree_consistency_proofs(ref_tree: dict[str, Any]) -> None:
    leaves = _ref_leaves(ref_tree)
    store = MemoryHashStore()
    for h in leaves:
        store.append(h)
    cases = ref_tree["consistency"]
    assert len(cases) == sum(range(1, 9))  # every 1 <= size1 <= size2 <= 8
    for case in cases:
        size1, size2 = case["size1"], case["size2"]
        want = case["proof_hex"]
        assert [p.hex() for p in reference_consistency_proof(size1, leaves[:size2])] == want
        proof = store.consistency_proof(size1, size2)
        assert [p.hex() for p in proof] == want
        verify_consistency(size1, size2, proof, store.root(size1), store.root(size2))


def test_hash_prefixes_and_empty_root() -> None:
    import hashlib

    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert leaf_hash(b"ab") == hashlib.sha256(b"\x00ab").digest()
    assert (
        node_hash(b"l" * 32, b"r" * 32) == hashlib.sha256(b"\x01" + b"l" * 32 + b"r" * 32).digest()
    )
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert RootBuilder().root() == EMPTY_ROOT


# --- one code per failure ------------------------------------------------------------------

LEAVES = [leaf_hash(bytes([i])) for i in range(11)]


def _tree(n: int) -> MemoryHashStore:
    store = MemoryHashStore()
    for h in LEAVES[:n]:
        store.append(h)
    return store


def _flip(b: bytes) -> bytes:
    return bytes([b[0] ^ 1]) + b[1:]


def _inclusion_code(**override: Any) -> tuple[str, str | None]:
    store = _tree(11)
    args: dict[str, Any] = {
        "leaf_hash": LEAVES[5],
        "index": 5,
        "size": 11,
        "proof": store.inclusion_proof(5),
        "root": store.root(),
    }
    args.update(override)
    with pytest.raises(VerificationError) as info:
        verify_inclusion(**args)
    return info.value.code, info.value.field


def test_inclusion_failure_codes() -> None:
    proof = _tree(11).inclusion_proof(5)
    assert _inclusion_code(leaf_hash=LEAVES[5][:31]) == ("malformed_hash", "leaf_hash")
    assert _inclusion_code(root=b"") == ("malformed_hash", "root")
    assert _inclusion_code(size=-1) == ("tree_size_invalid", "size")
    assert _inclusion_code(index=11) == ("index_out_of_range", "index")
    assert _inclusion_code(index=-1) == ("index_out_of_range", "index")
    assert _inclusion_code(proof=[*proof[:2], b"", *proof[2:]]) == ("malformed_proof", "proof[2]")
    assert _inclusion_code(proof=proof[:-1]) == ("proof_length_invalid", "proof")
    assert _inclusion_code(proof=[*proof, proof[0]]) == ("proof_length_invalid", "proof")
    assert _inclusion_code(root=_flip(_tree(11).root())) == ("inclusion_proof_invalid", "proof")
    assert _inclusion_code(leaf_hash=LEAVES[4]) == ("inclusion_proof_invalid", "proof")
    assert _inclusion_code(index=4) == ("inclusion_proof_invalid", "proof")


def _consistency_code(**override: Any) -> tuple[str, str | None]:
    store = _tree(11)
    args: dict[str, Any] = {
        "size1": 6,
        "size2": 11,
        "proof": store.consistency_proof(6),
        "root1": store.root(6),
        "root2": store.root(),
    }
    args.update(override)
    with pytest.raises(VerificationError) as info:
        verify_consistency(**args)
    return info.value.code, info.value.field


def test_consistency_failure_codes() -> None:
    store = _tree(11)
    proof, root1, root2 = store.consistency_proof(6), store.root(6), store.root()
    assert _consistency_code(size1=-1)[0] == "tree_size_invalid"
    assert _consistency_code(size2=5) == ("tree_size_decreased", "size2")
    assert _consistency_code(size1=0) == ("consistency_from_empty_tree", "size1")
    zero = {"size1": 0, "size2": 0, "proof": [], "root1": EMPTY_ROOT, "root2": EMPTY_ROOT}
    assert _consistency_code(**zero) == ("consistency_from_empty_tree", "size1")
    same = {"size1": 11, "size2": 11, "root1": root2, "root2": root2}
    assert _consistency_code(**same, proof=[root2]) == ("proof_length_invalid", "proof")
    assert _consistency_code(**{**same, "root1": root1}, proof=[]) == (
        "consistency_proof_invalid",
        "root2",
    )
    assert _consistency_code(root1=root1[:31]) == ("malformed_hash", "root1")
    assert _consistency_code(root2=root2 + b"\0") == ("malformed_hash", "root2")
    assert _consistency_code(proof=[b"x" * 31, *proof[1:]]) == ("malformed_proof", "proof[0]")
    assert _consistency_code(proof=proof[1:]) == ("proof_length_invalid", "proof")
    assert _consistency_code(proof=[]) == ("proof_length_invalid", "proof")
    assert _consistency_code(root1=_flip(root1)) == ("consistency_proof_invalid", "root1")
    assert _consistency_code(root2=_flip(root2)) == ("consistency_proof_invalid", "root2")


def test_equal_sizes_with_equal_roots_verify() -> None:
    store = _tree(7)
    verify_consistency(7, 7, [], store.root(), store.root())


def test_error_codes_are_distinct_and_documented() -> None:
    assert len(set(merkle.ERROR_CODES)) == len(merkle.ERROR_CODES)
    spec = REPO / "spec"
    text = "".join(
        p.read_text() for p in (spec / "log.md",) if p.is_file()
    )
    missing = [code for code in merkle.ERROR_CODES if f"`{code}`" not in text]
    assert not missing, f"error codes not documented in spec/: {missing}"
