"""verify_batch on a thread pool: the same leaves pass, and the same first fault is reported.

The pool checks slices of a batch at once; a fault must still be the one a serial check meets
first (an earlier leaf's duplicate id before a later leaf's bad signature in another slice),
and every fault must still be caught whichever slice it lands in.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.core.entries import leaf_bytes, sign_entry
from federation.core.replication import VerifiedBatch, verify_batch
from federation.errors import VerificationError
from tests.unit.sync.helpers import LOG_KEYS, T0, FakeLog, make_manifest, member_of, submission

MANIFEST = make_manifest()
POLICE = member_of(MANIFEST, "police")
NOW = T0 + 10_000
SIZE = 300  # several slices of at least the minimum slice length


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


@pytest.fixture(scope="module")
def log() -> FakeLog:
    fake = FakeLog()
    fake.add(SIZE)
    return fake


def run(
    log: FakeLog, leaves: list[tuple[int, bytes]], pool: ThreadPoolExecutor | None
) -> VerifiedBatch:
    return verify_batch(
        POLICE,
        None,
        log.note(),
        leaves,
        [],
        manifest=MANIFEST,
        now=NOW,
        pool=pool,
    )


def outcome(log: FakeLog, leaves: list[tuple[int, bytes]], pool: ThreadPoolExecutor | None) -> str:
    try:
        batch = run(log, leaves, pool)
    except VerificationError as exc:
        return f"{exc.code} {exc.field}"
    return f"ok {[v.index for v in batch.leaves] == list(range(SIZE))} {batch.root.hex()}"


def test_honest_batch_is_the_same_on_a_pool(log: FakeLog, pool: ThreadPoolExecutor) -> None:
    serial = run(log, log.page(0, SIZE), None)
    pooled = run(log, log.page(0, SIZE), pool)
    assert pooled == serial
    assert [v.index for v in pooled.leaves] == list(range(SIZE))


def test_earlier_duplicate_beats_later_bad_signature(
    log: FakeLog, pool: ThreadPoolExecutor
) -> None:
    leaves = log.page(0, SIZE)
    leaves[3] = (3, leaves[1][1])  # duplicate id in the first slice
    forged = leaf_bytes(sign_entry(submission("police", 290), LOG_KEYS["relay"]))
    leaves[290] = (290, forged)  # bad signature in the last slice
    assert (
        outcome(log, leaves, pool) == outcome(log, leaves, None) == ("duplicate_entry_id leaves[3]")
    )


@settings(max_examples=25, deadline=None)
@given(faults=st.lists(st.tuples(st.integers(0, SIZE - 1), st.sampled_from("dms")), max_size=3))
def test_any_faults_give_the_serial_outcome(
    log: FakeLog, pool: ThreadPoolExecutor, faults: list[tuple[int, str]]
) -> None:
    leaves = log.page(0, SIZE)
    for index, kind in faults:
        if kind == "d":  # a duplicate of another leaf's entry
            leaves[index] = (index, leaves[(index + 1) % SIZE][1])
        elif kind == "m":  # not canonical
            leaves[index] = (index, leaves[index][1] + b" ")
        else:  # signed by the wrong key
            wrong = sign_entry(submission("police", index), LOG_KEYS["relay"])
            leaves[index] = (index, leaf_bytes(wrong))
    assert outcome(log, leaves, pool) == outcome(log, leaves, None)
    if faults:
        assert not outcome(log, leaves, pool).startswith("ok")


def test_suspension_by_size_is_caught_in_any_slice(pool: ThreadPoolExecutor) -> None:
    """Every slice judges its leaves against the same suspension (the last slice here)."""
    manifest = make_manifest(police={"status": "suspended", "suspended_size": SIZE - 10})
    police = member_of(manifest, "police")
    fake = FakeLog()
    fake.add(SIZE - 10)
    fake.add(10, created=T0 - 10**6)  # back-dated by a thief holding the log key
    for executor in (pool, None):
        with pytest.raises(VerificationError) as err:
            verify_batch(
                police,
                None,
                fake.note(),
                fake.page(0, SIZE),
                [],
                manifest=manifest,
                now=NOW,
                pool=executor,
            )
        assert (err.value.code, err.value.field) == ("member_suspended", f"leaves[{SIZE - 10}]")
