"""The auditor finds an entry id repeated anywhere in a log (spec/audit.md §3.8): within one
run, against the digests earlier runs kept beside the state file, offline in a bundle, and
each finding proves itself (both leaves, inclusion proofs, the signed checkpoint)."""

from __future__ import annotations

import base64
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from federation.audit import findings as F
from federation.audit.bundle import BundleSource
from federation.audit.duplicates import MAX_REPORTED, repeats
from federation.audit.leaves import id_digest
from federation.audit.runner import AuditOptions, Auditor
from federation.audit.state import AuditorState, load_state, save_state
from federation.core.checkpoint import open_checkpoint
from federation.core.entries import leaf_hash, parse_leaf, verify_leaf
from federation.core.merkle import verify_inclusion
from federation.core.note import SignedNote
from tests.unit.audit.fed import LOG_KEYS, MemLog, MemSource, make_manifest
from tests.unit.audit.test_bundle_state import write_bundle
from tests.unit.audit.test_runner import NOW, audit, codes, origin


def digests(*values: int) -> bytes:
    return b"".join(v.to_bytes(8, "little") for v in values)


def test_repeats_pairs_each_later_leaf_with_the_first_one() -> None:
    assert repeats(digests(5, 7, 0, 5, 9, 7, 5, 0, 0), 0) == [(0, 3), (1, 5), (0, 6)]
    assert repeats(digests(5, 7, 0, 5, 9, 7, 5), 4) == [(1, 5), (0, 6)]  # earlier pairs known
    assert repeats(digests(5, 7, 9), 0) == []
    assert repeats(digests(0, 0, 0), 0) == []  # invalid leaves have no id
    assert repeats(digests(5, 7), 2) == []  # nothing new


def proves(finding: F.Finding, log: MemLog, first: int, later: int) -> None:
    """What a third party checks with the log key alone."""
    evidence: dict[str, Any] = finding.evidence
    key = LOG_KEYS[log.member_id].public
    cp = open_checkpoint(SignedNote.parse(evidence["checkpoint"]), key, expected_origin=key.name)
    assert evidence["tree_size"] == cp.size
    a, b = evidence["leaves"]
    assert (a["index"], b["index"]) == (first, later)
    leaves = [base64.b64decode(x["leaf"]) for x in (a, b)]
    assert len({verify_leaf(leaf, key).entry.id for leaf in leaves}) == 1
    for x, leaf in zip((a, b), leaves, strict=True):
        proof = [base64.b64decode(p) for p in x["inclusion_proof"]]
        verify_inclusion(leaf_hash(leaf), x["index"], cp.size, proof, cp.root)


def dup_findings(report: F.Report, member: str = "police") -> list[F.Finding]:
    return [f for f in origin(report, member).findings if f.code == F.DUPLICATE_ENTRY_ID]


async def test_a_repeat_within_one_run_fails_with_proof() -> None:
    log = MemLog("police")
    log.submit(10)
    log.duplicate(of=3)  # 10
    log.submit(2)
    report, state = await audit([MemSource("node", {"police": log})])
    assert codes(report) == {F.DUPLICATE_ENTRY_ID}
    [finding] = dup_findings(report)
    assert finding.evidence["source"] == "node"
    assert finding.evidence["checkpoint"] == log.note()
    proves(finding, log, 3, 10)
    assert "police" not in state.origins  # a failing origin does not advance


async def test_a_repeat_of_an_id_verified_on_an_earlier_run(tmp_path: Path) -> None:
    log = MemLog("police")
    log.submit(10)
    source = MemSource("node", {"police": log})
    path = tmp_path / "state.json"
    _, state = await audit([source])
    save_state(path, state)
    assert (tmp_path / "state.json.ids" / "police.bin").stat().st_size == 8 * 10
    log.submit(3)
    log.duplicate(of=2)  # 13
    report, state = await audit([source], load_state(path, state.federation))
    assert origin(report, "police").verified_from == 10  # incremental, yet the repeat is found
    [finding] = dup_findings(report)
    proves(finding, log, 2, 13)
    assert state.origins["police"].size == 10
    # The next run finds it again (the state did not move past it).
    report, _ = await audit([source], load_state(path, state.federation))
    assert len(dup_findings(report)) == 1


async def test_an_honest_incremental_run_extends_the_id_file(tmp_path: Path) -> None:
    log = MemLog("police")
    log.submit(6)
    source = MemSource("node", {"police": log})
    path = tmp_path / "state.json"
    _, state = await audit([source])
    save_state(path, state)
    log.submit(5)
    report, state = await audit([source], load_state(path, state.federation))
    assert report.verdict == "pass"
    save_state(path, state)
    data = (tmp_path / "state.json.ids" / "police.bin").read_bytes()
    assert data == b"".join(id_digest(parse_leaf(leaf).entry.id) for leaf in log.leaves)


async def test_a_state_without_id_digests_reads_the_log_in_full_once(tmp_path: Path) -> None:
    """A state written before the id files existed (or with the file gone) cannot be checked
    incrementally for repeats: the next run reads that log from 0, then keeps the digests."""
    log = MemLog("police")
    log.submit(8)
    source = MemSource("node", {"police": log})
    path = tmp_path / "state.json"
    _, state = await audit([source])
    save_state(path, state)
    (tmp_path / "state.json.ids" / "police.bin").unlink()
    log.duplicate(of=1)  # 8
    report, _ = await audit([source], load_state(path, state.federation))
    assert origin(report, "police").verified_from == 0
    [finding] = dup_findings(report)
    proves(finding, log, 1, 8)


async def test_equal_digests_of_different_ids_are_not_reported() -> None:
    log = MemLog("police")
    log.submit(6)
    source = MemSource("node", {"police": log})
    _, state = await audit([source])
    log.submit(1)  # leaf 6, a new id
    # As if leaf 2's id had the same digest as leaf 6's: the leaves themselves tell otherwise.
    fake = [id_digest(parse_leaf(leaf).entry.id) for leaf in log.leaves[:6]]
    fake[2] = id_digest(parse_leaf(log.leaves[6]).entry.id)
    report, _ = await audit([source], state.with_id_digests("police", 0, b"".join(fake)))
    assert report.verdict == "pass"
    assert dup_findings(report) == []


async def test_an_unprovable_candidate_holds_the_state() -> None:
    log = MemLog("police")
    log.submit(5)
    source = MemSource("node", {"police": log})
    _, state = await audit([source])
    log.duplicate(of=0)  # 5
    source.dropped.add(("police", 0))  # the earlier leaf is no longer served
    report, after = await audit([source], state)
    assert dup_findings(report) == []
    unavailable = [f for f in origin(report, "police").findings if f.code == F.SOURCE_UNAVAILABLE]
    assert len(unavailable) == 1
    assert unavailable[0].evidence == {"index": 5}
    assert after.origins["police"].size == 5  # not advanced: checked again next time


async def test_many_repeats_are_counted_beyond_the_reported_ones() -> None:
    log = MemLog("police")
    log.submit(3)
    for _ in range(MAX_REPORTED + 4):
        log.duplicate(of=1)
    report, _ = await audit([MemSource("node", {"police": log})])
    found = dup_findings(report)
    assert len(found) == MAX_REPORTED + 1
    proves(found[0], log, 1, 3)
    assert found[-1].evidence["unreported"] == 4


async def test_a_bundle_repeat_is_proven_offline(tmp_path: Path) -> None:
    log = MemLog("police")
    log.submit(7)
    log.duplicate(of=6)
    bundle = tmp_path / "b.jsonl"
    write_bundle(bundle, {"police": log})
    source = BundleSource(bundle)  # serves no inclusion proofs: they are computed locally
    try:
        report, _ = await audit([source], options=AuditOptions(full=True))
    finally:
        await source.close()
    [finding] = dup_findings(report)
    proves(finding, log, 6, 7)


async def test_process_pool_finds_the_same_repeats() -> None:
    log = MemLog("police")
    log.submit(30)
    log.duplicate(of=25)
    manifest = make_manifest()
    with ProcessPoolExecutor(max_workers=2) as pool:
        auditor = Auditor(
            manifest,
            [MemSource("node", {"police": log})],
            clock=lambda: NOW,
            executor=pool,
            options=AuditOptions(chunk=7),
        )
        report, _ = await auditor.run(AuditorState(federation=manifest.federation))
    [finding] = dup_findings(report)
    proves(finding, log, 25, 30)
