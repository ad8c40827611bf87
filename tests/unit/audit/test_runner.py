"""The auditor end to end over in-memory sources: honest pass and each failure with evidence."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from federation.audit import findings as F
from federation.audit.runner import AuditOptions, Auditor
from federation.audit.sources import LogSource
from federation.audit.state import AuditorState
from federation.core.checkpoint import Checkpoint, sign_checkpoint
from federation.core.entries import EntryRef, leaf_hash
from federation.core.keys import SigningKey
from federation.core.manifest import Manifest
from tests.unit.audit.fed import T0, MemLog, MemSource, make_manifest

NOW = T0 + 100_000


def honest_logs() -> dict[str, MemLog]:
    police, hotline, platform = MemLog("police"), MemLog("hotline"), MemLog("platform")
    police.submit(30)
    hotline.submit(5)
    police.retract(police.ref(3), "duplicate")
    platform.opine(police.ref(4), "false_positive")
    platform.opine(hotline.ref(1), "true_positive")
    return {"police": police, "hotline": hotline, "platform": platform}


async def audit(
    sources: Sequence[LogSource],
    state: AuditorState | None = None,
    *,
    manifest: Manifest | None = None,
    options: AuditOptions | None = None,
) -> tuple[F.Report, AuditorState]:
    manifest = manifest or make_manifest()
    auditor = Auditor(manifest, sources, clock=lambda: NOW, options=options)
    return await auditor.run(state or AuditorState(federation=manifest.federation))


def codes(report: F.Report, member: str | None = None) -> set[str]:
    return {
        f.code
        for o in report.origins
        if member is None or o.member_id == member
        for f in o.findings
        if f.level == "fail"
    }


def origin(report: F.Report, member: str) -> F.OriginReport:
    return next(o for o in report.origins if o.member_id == member)


async def test_honest_federation_passes_with_counts() -> None:
    logs = honest_logs()
    report, state = await audit([MemSource("node-a", logs), MemSource("node-b", logs)])
    assert report.verdict == "pass", report.model_dump_json(indent=1)
    police = origin(report, "police")
    assert police.size == 31
    assert police.entries_by_kind == {"retraction": 1, "submission": 30}
    assert police.entries_by_label == {"csam": 30}
    assert police.retractions_by_reason == {"duplicate": 1}
    assert police.disputes == 1
    assert origin(report, "hotline").disputes == 0
    assert len(police.checkpoints) == 2
    assert state.origins["police"].size == 31
    assert state.origins["police"].root == logs["police"].hashes.root().hex()


async def test_second_run_verifies_only_new_leaves_and_keeps_counts() -> None:
    logs = honest_logs()
    source = MemSource("node", logs)
    _, state = await audit([source])
    logs["police"].submit(7, tag="b")
    logs["platform"].opine(logs["police"].ref(2), "disputed_label")  # target from run 1
    report, state2 = await audit([source], state)
    assert report.verdict == "pass", report.model_dump_json(indent=1)
    police = origin(report, "police")
    assert police.verified_from == 31
    assert police.size == 38
    assert police.entries_by_kind == {"retraction": 1, "submission": 37}
    assert state2.origins["police"].size == 38


async def test_tampered_leaf_fails_with_leaf_as_evidence() -> None:
    logs = honest_logs()
    source = MemSource("node", logs)
    original = logs["police"].leaves[7]
    tampered = original.replace(b'"high"', b'"low"')
    assert tampered != original
    source.replaced[("police", 7)] = tampered
    report, state = await audit([source])
    assert report.verdict == "fail"
    assert codes(report, "police") == {F.BAD_ENTRY_SIGNATURE, F.ROOT_MISMATCH}
    bad = next(f for f in origin(report, "police").findings if f.code == F.BAD_ENTRY_SIGNATURE)
    assert bad.evidence["index"] == 7
    assert base64.b64decode(bad.evidence["leaf"]) == tampered
    mismatch = next(f for f in origin(report, "police").findings if f.code == F.ROOT_MISMATCH)
    assert mismatch.evidence["checkpoint"] == logs["police"].note()
    assert "police" not in state.origins  # a failed origin never advances the state


async def test_dropped_entry_is_missing() -> None:
    logs = honest_logs()
    source = MemSource("node", logs)
    source.dropped.add(("police", 12))
    report, _ = await audit([source])
    assert codes(report, "police") == {F.MISSING_ENTRY}
    missing = next(f for f in origin(report, "police").findings if f.code == F.MISSING_ENTRY)
    assert missing.evidence["index"] == 12


async def test_forked_origin_same_size_is_split_view() -> None:
    a, b = MemLog("police"), MemLog("police")
    a.submit(10, tag="a")
    b.submit(10, tag="b")
    report, _ = await audit(
        [MemSource("node-a", {"police": a}), MemSource("node-b", {"police": b})]
    )
    assert F.SPLIT_VIEW in codes(report, "police")
    split = next(f for f in origin(report, "police").findings if f.code == F.SPLIT_VIEW)
    assert {split.evidence["note_a"], split.evidence["note_b"]} == {a.note(), b.note()}


async def test_forked_origin_different_sizes_is_split_view_from_leaves() -> None:
    a, b = MemLog("police"), MemLog("police")
    a.submit(10)
    b.submit(4)
    b.submit(8, tag="fork")  # same first 4 leaves, then a different history
    report, _ = await audit(
        [MemSource("node-a", {"police": a}), MemSource("node-b", {"police": b})]
    )
    assert codes(report, "police") == {F.SPLIT_VIEW}
    split = next(f for f in origin(report, "police").findings if f.code == F.SPLIT_VIEW)
    assert split.evidence["size"] == 10
    assert split.evidence["note_a"] == a.note()


async def test_rolled_back_checkpoint_fails() -> None:
    log = MemLog("police")
    log.submit(10)
    source = MemSource("node", {"police": log})
    _, state = await audit([source])
    source.notes["police"] = log.note(6)
    report, _ = await audit([source], state)
    assert codes(report, "police") == {F.CHECKPOINT_ROLLBACK}
    rollback = origin(report, "police").findings[0]
    assert rollback.evidence["previous_note"] == log.note(10)
    assert rollback.evidence["note"] == log.note(6)


async def test_rewritten_history_is_inconsistent_with_previous_run() -> None:
    log = MemLog("police")
    log.submit(10)
    _, state = await audit([MemSource("node", {"police": log})])
    other = MemLog("police")
    other.submit(14, tag="x")
    for full in (False, True):
        report, _ = await audit(
            [MemSource("node", {"police": other})], state, options=AuditOptions(full=full)
        )
        assert codes(report, "police") == {F.INCONSISTENT_WITH_PREVIOUS_RUN}, full
        found = origin(report, "police").findings[0]
        assert found.evidence["note_a"] == log.note(10)
        assert found.evidence["note_b"] == other.note()


async def test_entry_signed_after_suspension_fails() -> None:
    log = MemLog("police")
    log.submit(5)
    log.submit(1, created=T0 + 500)
    manifest = make_manifest(suspended={"police": T0 + 400})
    report, _ = await audit([MemSource("node", {"police": log})], manifest=manifest)
    assert codes(report, "police") == {F.ENTRY_AFTER_SUSPENSION}
    finding = origin(report, "police").findings[0]
    assert finding.evidence["index"] == 5
    assert finding.evidence["suspended_at"] == T0 + 400
    assert finding.evidence["created"] == T0 + 500


async def test_back_dated_entries_beyond_suspended_size_fail() -> None:
    """A thief with police's log key appends entries back-dated before any suspended_at; at a
    log size they are still caught, and the vouched entries below it pass even if late."""
    log = MemLog("police")
    log.submit(4)
    log.submit(1, created=T0 + 90_000)  # index 4: created late, below the vouched size
    log.submit(2, created=T0 - 3600, tag="thief")  # indices 5, 6: back-dated
    sources = [MemSource("node", {"police": log})]

    by_time, _ = await audit(sources, manifest=make_manifest(suspended={"police": T0 + 100_000}))
    assert by_time.verdict == "pass"  # the gap a suspension by time leaves

    report, _ = await audit(sources, manifest=make_manifest(suspended_size={"police": 5}))
    assert codes(report, "police") == {F.ENTRY_AFTER_SUSPENSION}
    findings = origin(report, "police").findings
    assert [f.evidence["index"] for f in findings] == [5, 6]
    assert findings[0].evidence["suspended_size"] == 5
    assert findings[0].evidence["created"] == T0 - 3600
    assert "suspended_at" not in findings[0].evidence
    assert base64.b64decode(findings[0].evidence["leaf"]) == log.leaves[5]
    assert "at or beyond the suspension at log size 5" in findings[0].message

    both = make_manifest(suspended={"police": T0 + 90_000}, suspended_size={"police": 5})
    report, _ = await audit(sources, manifest=both)
    findings = origin(report, "police").findings
    assert [f.evidence["index"] for f in findings] == [4, 5, 6]  # both rules apply
    assert findings[0].evidence["suspended_at"] == T0 + 90_000
    assert findings[0].evidence["suspended_size"] == 5


async def test_retraction_of_nonexistent_entry_dangles() -> None:
    log = MemLog("police")
    log.submit(3)
    ghost = EntryRef(origin="police", index=99, leaf_hash="ab" * 32)
    at = log.retract(ghost)
    wrong_hash = EntryRef(origin="police", index=1, leaf_hash="cd" * 32)
    log.retract(wrong_hash)
    report, _ = await audit([MemSource("node", {"police": log})])
    dangling = [f for f in origin(report, "police").findings if f.code == F.DANGLING_REFERENCE]
    assert [f.evidence["index"] for f in dangling] == [at, at + 1]
    assert base64.b64decode(dangling[0].evidence["leaf"]) == log.leaves[at]


async def test_bad_checkpoint_signature() -> None:
    log = MemLog("police")
    log.submit(3)
    forged_key = SigningKey.from_seed(log.key.name, b"\x01" * 32)
    forged = sign_checkpoint(Checkpoint(log.key.name, 3, log.hashes.root()), forged_key)
    source = MemSource("node", {"police": log}, police=forged.serialise())
    report, _ = await audit([source, MemSource("good", {"police": log})])
    assert codes(report, "police") == {F.BAD_CHECKPOINT_SIGNATURE}
    bad = origin(report, "police").findings[0]
    assert bad.evidence["note"] == forged.serialise()
    assert bad.evidence["source"] == "node"


async def test_witness_quorum() -> None:
    log = MemLog("police")
    log.submit(3)
    manifest = make_manifest(witness_quorum=1)
    plain = MemSource("node", {"police": log})
    report, _ = await audit([plain], manifest=manifest)
    assert F.WITNESS_QUORUM_NOT_MET in codes(report, "police")
    cosigned = MemSource("node", {"police": log}, police=log.note(cosigned=True))
    report, _ = await audit([cosigned], manifest=manifest)
    assert F.WITNESS_QUORUM_NOT_MET not in codes(report, "police")


async def test_lagging_mirror_is_consistent() -> None:
    log = MemLog("police")
    log.submit(20)
    lagging = MemSource("mirror", {"police": log}, police=log.note(9))
    report, _ = await audit([MemSource("origin", {"police": log}), lagging])
    assert report.verdict == "pass"
    assert leaf_hash(log.leaves[0]) == log.hashes.read_hashes([0])[0]


async def test_many_checkpoints_inside_one_chunk_are_each_checked() -> None:
    log = MemLog("police")
    log.submit(40)
    sources = [MemSource(f"n{n}", {"police": log}, police=log.note(n)) for n in (3, 7, 8, 21, 33)]
    report, _ = await audit([MemSource("origin", {"police": log}), *sources])
    assert report.verdict == "pass", report.model_dump_json(indent=1)
    fork = MemLog("police")
    fork.submit(21, tag="f")
    sources.append(MemSource("fork", {"police": fork}))
    report, _ = await audit([MemSource("origin", {"police": log}), *sources])
    assert codes(report, "police") == {F.SPLIT_VIEW}
