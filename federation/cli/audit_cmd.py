"""``hashfed audit``: verify every member's log from nodes or an offline bundle (spec/audit.md).

The manifest given with ``--manifest`` is the auditor's trust root (verified against its own
stewards, like a node's pinned genesis); nothing the nodes say is trusted beyond it.  Reads are
unsigned unless ``--key``/``--key-id`` name the auditor's transport key, in which case requests
to a node whose URL is a member endpoint are signed for that member.

Exit codes: 0 the audit passed, 1 it failed (a finding of level ``fail``), 2 usage, 3 no
source reachable.  ``--watch`` repeats the audit every ``--interval`` seconds and exits 1 on the
first failing run, after printing the report and an alert on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from federation.audit import findings as F
from federation.audit.bundle import BundleSource
from federation.audit.runner import AuditOptions, Auditor
from federation.audit.sources import HttpSource, LogSource
from federation.audit.state import AuditorState, load_state, save_state
from federation.cli.output import ProgressBar, notice, print_json, print_table
from federation.core.manifest import Manifest, parse_signed_manifest, verify_manifest
from federation.errors import InputError, PeerError
from federation.keyfile import load_private_key

DEFAULT_STATE = "hashfed-audit-state.json"


def register(sub: Any) -> None:
    """Add ``hashfed audit``."""
    p = sub.add_parser("audit", help="verify every member's log (from nodes or a bundle)")
    p.add_argument("nodes", nargs="*", metavar="NODE_URL", help="node base URLs to read from")
    p.add_argument("--manifest", required=True, type=Path, help="trusted signed manifest")
    p.add_argument("--bundle", type=Path, help="audit an exported bundle, with no network")
    p.add_argument("--state", type=Path, default=Path(DEFAULT_STATE), help="state file")
    p.add_argument("--no-state", action="store_true", help="neither read nor write a state")
    p.add_argument("--full", action="store_true", help="re-verify every leaf from index 0")
    p.add_argument("--json", action="store_true", help="print the report as one JSON line")
    p.add_argument("--watch", action="store_true", help="re-audit until the first failure")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between watch runs")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="verify processes")
    p.add_argument("--key", type=Path, help="auditor transport key file (signs requests)")
    p.add_argument("--key-id", help="key id of --key in the manifest")
    p.set_defaults(func=run)


def load_trusted_manifest(path: Path) -> Manifest:
    """Read and self-verify the manifest the auditor trusts."""
    signed = parse_signed_manifest(path.read_bytes())
    verify_manifest(signed)
    return signed.manifest


def _sources(args: argparse.Namespace, manifest: Manifest) -> list[LogSource]:
    if args.bundle is not None:
        if args.nodes:
            raise InputError("give either NODE_URL arguments or --bundle, not both")
        return [BundleSource(args.bundle)]
    if not args.nodes:
        raise InputError("give at least one NODE_URL, or --bundle FILE")
    if (args.key is None) != (args.key_id is None):
        raise InputError("--key and --key-id go together", field="key")
    key = load_private_key(args.key) if args.key is not None else None
    out: list[LogSource] = []
    for url in args.nodes:
        member = next(
            (m for m in manifest.members if m.endpoint.rstrip("/") == url.rstrip("/")), None
        )
        destination = member.id if member is not None else None
        out.append(
            HttpSource(url, key=key, keyid=args.key_id, destination=destination, clock=time.time)
        )
    return out


def print_report(report: F.Report, *, as_json: bool) -> None:
    """The report as a JSON line, or as a table followed by one line per finding."""
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    rows = []
    for o in report.origins:
        fails = sum(f.level == "fail" for f in o.findings)
        rows.append(
            (
                o.member_id,
                o.size,
                o.verified_from,
                o.entries_by_kind.get("submission", 0),
                o.entries_by_kind.get("retraction", 0),
                o.entries_by_kind.get("opinion", 0),
                o.disputes,
                fails,
                len(o.findings) - fails,
                "pass" if fails == 0 else "FAIL",
            )
        )
    headers = ("origin", "size", "from", "subs", "retr", "opin", "disputes", "fails", "anom", "")
    print_table(rows, headers)
    for o in report.origins:
        for f in o.findings:
            print(f"{f.level}: {o.member_id}: {f.code}: {f.message}")
    print(f"verdict: {report.verdict}")


async def _once(
    auditor: Auditor, state: AuditorState, sources: list[LogSource]
) -> tuple[F.Report, AuditorState]:
    report, new_state = await auditor.run(state)
    reached = [o for o in report.origins if o.checkpoints]
    if (
        not reached
        and all(f.code == F.SOURCE_UNAVAILABLE for o in report.origins for f in o.findings)
        and any(o.findings for o in report.origins)
    ):
        raise PeerError("no source could be read", code="peer_unreachable")
    return report, new_state


async def _main(args: argparse.Namespace, executor: Executor | None) -> int:
    manifest = load_trusted_manifest(args.manifest)
    use_state = not args.no_state
    state = (
        load_state(args.state, manifest.federation)
        if use_state
        else AuditorState(federation=manifest.federation)
    )
    sources = _sources(args, manifest)

    def save(s: AuditorState) -> None:
        if use_state:
            save_state(args.state, s)

    try:
        while True:
            with ProgressBar(None, "leaves verified") as bar:
                auditor = Auditor(
                    manifest,
                    sources,
                    clock=time.time,
                    executor=executor,
                    options=AuditOptions(full=args.full or args.bundle is not None),
                    save=save,
                    on_leaves=bar.advance,
                )
                report, state = await _once(auditor, state, sources)
            save(state)
            if not args.watch or report.verdict == "fail":
                print_report(report, as_json=args.json)
                if report.verdict == "fail" and args.watch:
                    notice("ALERT: audit failed; see the findings above")
                return 0 if report.verdict == "pass" else 1
            notice(f"audit passed at {report.generated_at}; next in {args.interval:g}s")
            await asyncio.sleep(args.interval)
    finally:
        for source in sources:
            await source.close()


def run(args: argparse.Namespace) -> int:
    """Entry point of ``hashfed audit``."""
    if args.workers < 1:
        raise InputError("--workers must be at least 1", field="workers")
    # The pool forks before the event loop starts, so workers inherit no loop or sockets.
    if args.workers == 1:
        return asyncio.run(_main(args, None))
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        return asyncio.run(_main(args, pool))
