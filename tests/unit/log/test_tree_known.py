"""Receipts from an append's own hashes: the same proofs as from storage, or none at all.

The write route answers a fresh batch with proofs built only from the hashes the append read
and wrote; they must equal the proofs storage gives, and an index whose proof needs a hash
the append never touched must fall back to storage rather than guess.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from federation.core.merkle import verify_inclusion
from federation.core.tlog import MemoryHashStore, stored_hash_count
from federation.log import reader, tree
from federation.log.mirror import frontier_positions
from tests.unit.log.test_writer import ORIGIN, open_writer, submission


async def test_fresh_batch_proofs_equal_stored_ones(db_url: str) -> None:
    writer, store = await open_writer(db_url)
    await writer.append([submission(i) for i in range(21)])
    result = await writer.append([submission(i) for i in range(21, 58)])
    indexes = [a.index for a in result.appended]
    known = tree.proofs_from_known(indexes, 58, result.tree_hashes)
    assert known is not None
    async with store.read() as conn:  # type: ignore[attr-defined]
        stored = await reader.inclusion_proofs(conn, ORIGIN, indexes, 58)
    assert known == stored
    for a, proof in zip(result.appended, known, strict=True):
        verify_inclusion(a.leaf_hash, a.index, 58, proof, result.checkpoint.root)
    # Leaf 0's proof needs subtrees of the first append that the second never read.
    assert tree.proofs_from_known([0], 58, result.tree_hashes) is None
    assert tree.proofs_from_known(indexes, 58, {}) is None
    await store.close()  # type: ignore[attr-defined]


@settings(max_examples=40, deadline=None)
@given(before=st.integers(0, 70), added=st.integers(1, 40))
def test_hashes_of_an_append_hold_every_proof_of_its_leaves(before: int, added: int) -> None:
    """What append_leaf_hashes keeps (old frontier + written) proves every new leaf."""
    hashes = MemoryHashStore()
    for i in range(before + added):
        hashes.append(i.to_bytes(32, "big"))
    start, end = stored_hash_count(before), stored_hash_count(before + added)
    held = [*frontier_positions(before), *range(start, end)]
    known = dict(zip(held, hashes.read_hashes(held), strict=True))
    indexes = list(range(before, before + added))
    proofs = tree.proofs_from_known(indexes, before + added, known)
    assert proofs == [hashes.inclusion_proof(i) for i in indexes]
