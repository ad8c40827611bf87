"""Bundles round-trip into a full offline audit; the state file is atomic and resumable."""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from federation.audit import findings as F
from federation.audit.bundle import BundleSource, BundleWriter
from federation.audit.leaves import id_digest
from federation.audit.runner import AuditOptions, Auditor
from federation.audit.state import AuditorState, load_state, save_state
from federation.core.entries import parse_leaf
from federation.errors import InputError
from tests.unit.audit.fed import MemLog, MemSource, make_manifest
from tests.unit.audit.test_runner import NOW, audit, codes, honest_logs, origin

REPO = Path(__file__).resolve().parents[3]


def write_bundle(path: Path, logs: dict[str, MemLog], history: tuple[int, ...] = ()) -> None:
    writer = BundleWriter(path, created=NOW, source="test", manifest={"x": 1})
    for member_id, log in sorted(logs.items()):
        older = [n for n in history if n < log.size]
        writer.log(member_id, log.size, [log.note(), *(log.note(n) for n in older)])
        for n in older:
            writer.consistency(member_id, n, log.size, log.hashes.consistency_proof(n, log.size))
        writer.entries(member_id, [(i, leaf) for i, leaf in enumerate(log.leaves)])
    writer.close()


@pytest.mark.parametrize("name", ["b.jsonl", "b.jsonl.gz"])
async def test_bundle_audit_passes_offline(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write_bundle(path, honest_logs(), history=(2, 5))
    source = BundleSource(path)
    assert await source.consistency("hotline", 2, 5) != []
    report, _ = await audit([source], options=AuditOptions(full=True))
    await source.close()
    assert report.verdict == "pass", report.model_dump_json(indent=1)
    assert len(origin(report, "police").checkpoints) == 3


async def test_bundle_with_forked_history_fails(tmp_path: Path) -> None:
    logs = honest_logs()
    fork = MemLog("police")
    fork.submit(12, tag="other")
    path = tmp_path / "b.jsonl"
    writer = BundleWriter(path, created=NOW, source="test", manifest={})
    log = logs["police"]
    writer.log("police", log.size, [log.note(), fork.note()])
    writer.entries("police", list(enumerate(log.leaves)))
    writer.close()
    source = BundleSource(path)
    report, _ = await audit([source], options=AuditOptions(full=True))
    await source.close()
    assert codes(report, "police") == {F.SPLIT_VIEW}


def test_bundle_without_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"type": "log", "member_id": "x", "size": 0}) + "\n")
    with pytest.raises(InputError) as err:
        BundleSource(path)
    assert err.value.code == "invalid_bundle"


def test_state_round_trip_and_federation_check(tmp_path: Path) -> None:
    path = tmp_path / "s" / "state.json"
    assert load_state(path, "audit.test") == AuditorState(federation="audit.test")
    state = AuditorState(federation="audit.test")
    save_state(path, state)
    assert load_state(path, "audit.test") == state
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temp file left
    with pytest.raises(InputError):
        load_state(path, "other.fed")
    path.write_text("{not json")
    with pytest.raises(InputError):
        load_state(path, "audit.test")


async def test_interrupted_run_resumes_from_progress() -> None:
    log = MemLog("police")
    log.submit(50)
    source = MemSource("node", {"police": log})
    saved: list[AuditorState] = []
    manifest = make_manifest()

    class Interrupt(Exception):
        pass

    def save(state: AuditorState) -> None:
        saved.append(state)
        if len(saved) == 2:
            raise Interrupt

    auditor = Auditor(
        manifest,
        [source],
        clock=lambda: NOW,
        options=AuditOptions(chunk=10, progress_every=10),
        save=save,
    )
    with pytest.raises(Interrupt):
        await auditor.run(AuditorState(federation=manifest.federation))
    progress = saved[-1].origins["police"].progress
    assert progress is not None
    assert progress.size == 20
    resumed = Auditor(manifest, [source], clock=lambda: NOW, options=AuditOptions(chunk=10))
    report, state = await resumed.run(saved[-1])
    assert report.verdict == "pass"
    assert origin(report, "police").verified_from == 20
    assert origin(report, "police").entries_by_kind == {"submission": 50}
    assert state.origins["police"].size == 50
    assert state.origins["police"].progress is None


async def test_resumed_tampered_leaves_still_fail() -> None:
    log = MemLog("police")
    log.submit(30)
    source = MemSource("node", {"police": log})
    manifest = make_manifest()
    auditor = Auditor(manifest, [source], clock=lambda: NOW, options=AuditOptions(chunk=10))
    state = AuditorState(federation=manifest.federation)
    # Progress claims leaves 0..19 with a bogus frontier: the final root cannot match.
    from federation.audit.state import OriginState, Progress

    bogus = Progress(size=20, frontier=("00" * 32, "11" * 32), counts={})
    state = state.model_copy(
        update={
            "origins": {
                "police": OriginState(
                    size=0, root=log.hashes.root(0).hex(), frontier=(), progress=bogus
                )
            }
        }
    )
    digests = b"".join(id_digest(parse_leaf(leaf).entry.id) for leaf in log.leaves[:20])
    report, _ = await auditor.run(state.with_id_digests("police", 0, digests))
    assert codes(report, "police") == {F.ROOT_MISMATCH}
    # Without the id digests of the leaves before it, progress is not resumed: a full read.
    report, _ = await auditor.run(state)
    assert report.verdict == "pass"
    assert origin(report, "police").verified_from == 0


async def test_process_pool_gives_the_same_report() -> None:
    logs = honest_logs()
    manifest = make_manifest()
    inline, _ = await audit([MemSource("node", logs)])
    with ProcessPoolExecutor(2) as pool:
        auditor = Auditor(
            manifest,
            [MemSource("node", logs)],
            clock=lambda: NOW,
            executor=pool,
            options=AuditOptions(chunk=7),
        )
        pooled, _ = await auditor.run(AuditorState(federation=manifest.federation))
    assert pooled == inline


def test_every_finding_code_is_in_the_spec() -> None:
    spec = (REPO / "spec" / "audit.md").read_text()
    missing = [code for code in F.ALL_CODES if f"`{code}`" not in spec]
    assert missing == []
