"""Merkle log throughput: append, root, proof generation and verification.

The peer measured in the same run is the hashing floor: a plain loop of ``hashlib.sha256`` over
65-byte node inputs (0x01 || left || right), the one operation every row is made of.  The
``cost`` column is each operation's time in units of that floor, so figures stay comparable
across machines: an append into the stored-hash table should cost about two node hashes (one
leaf write plus, on average, one completed parent), a proof verification about log2(n).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable

from federation.core.merkle import (
    RootBuilder,
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from federation.core.tlog import MemoryHashStore


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _hashing_floor(count: int) -> float:
    """Seconds per SHA-256 of one 65-byte node input, in the tightest plain loop."""
    sha256 = hashlib.sha256
    left, right = b"\x11" * 32, b"\x22" * 32

    def loop() -> None:
        h = left
        for _ in range(count):
            h = sha256(b"\x01" + h + right).digest()

    return _timed(loop) / count


def run(quick: bool) -> None:
    """Print one row per operation: ops, ops/s, µs/op and cost in floor hashes."""
    n = 100_000 if quick else 1_000_000
    n_proofs = 5_000 if quick else 20_000
    rng = random.Random(1)  # noqa: S311 - reproducible benchmark inputs, not security
    leaves = [leaf_hash(i.to_bytes(8, "big")) for i in range(n)]
    floor = _hashing_floor(n)

    rows: list[tuple[str, int, float]] = []
    rows.append(("sha256 node hash (floor)", n, floor * n))
    rows.append(
        ("leaf_hash", n, _timed(lambda: [leaf_hash(i.to_bytes(8, "big")) for i in range(n)]))
    )

    store = MemoryHashStore()
    append = store.append
    rows.append(("MemoryHashStore.append", n, _timed(lambda: [append(h) for h in leaves])))
    builder = RootBuilder()
    add = builder.append
    rows.append(("RootBuilder.append", n, _timed(lambda: [add(h) for h in leaves])))
    rows.append(("root_from_leaf_hashes (all)", 1, _timed(lambda: root_from_leaf_hashes(leaves))))
    assert builder.root() == store.root()

    sizes = [rng.randint(n // 2, n) for _ in range(n_proofs)]
    roots = {s: store.root(s) for s in sizes}
    rows.append(("MemoryHashStore.root", n_proofs, _timed(lambda: [store.root(s) for s in sizes])))

    indices = [rng.randrange(s) for s in sizes]
    inclusion: list[list[bytes]] = []
    rows.append(
        (
            "inclusion_proof",
            n_proofs,
            _timed(
                lambda: inclusion.extend(
                    store.inclusion_proof(i, s) for i, s in zip(indices, sizes, strict=True)
                )
            ),
        )
    )

    def verify_all_inclusion() -> None:
        for i, s, p in zip(indices, sizes, inclusion, strict=True):
            verify_inclusion(leaves[i], i, s, p, roots[s])

    rows.append(("verify_inclusion", n_proofs, _timed(verify_all_inclusion)))

    olds = [rng.randint(1, s) for s in sizes]
    old_roots = {m: store.root(m) for m in olds}
    consistency: list[list[bytes]] = []
    rows.append(
        (
            "consistency_proof",
            n_proofs,
            _timed(
                lambda: consistency.extend(
                    store.consistency_proof(m, s) for m, s in zip(olds, sizes, strict=True)
                )
            ),
        )
    )

    def verify_all_consistency() -> None:
        for m, s, p in zip(olds, sizes, consistency, strict=True):
            verify_consistency(m, s, p, old_roots[m], roots[s])

    rows.append(("verify_consistency", n_proofs, _timed(verify_all_consistency)))

    print(f"tree of {n:,} leaves; floor = {1 / floor:,.0f} node hashes/s")
    print(f"{'operation':<28} {'ops':>10} {'ops/s':>12} {'µs/op':>9} {'cost':>8}")
    for name, ops, seconds in rows:
        per_op = seconds / ops
        print(
            f"{name:<28} {ops:>10,} {ops / seconds:>12,.0f} {per_op * 1e6:>9.2f}"
            f" {per_op / floor:>7.1f}h"
        )
