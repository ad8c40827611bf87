"""``hashfed status``: what the member's node holds and how its replication is doing.

Prints the node's own log size, its match index sizes, one row per log it holds (its own and
every mirrored member's: size, frozen or not, last successful pull and its source, last
error) and one row per peer (failures, backoff, last success, last error).  Times are shown
as ages ("12s ago") so a stalled pull stands out.  ``--json`` prints the node's answer as is.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from federation.cli.nodeclient import NodeClient, add_node_arguments, resolve_target
from federation.cli.output import print_fields, print_json, print_table


def ago(when: int | None, now: float) -> str:
    """``12s ago`` / ``3m ago`` / ``-``."""
    if when is None or when == 0:
        return "-"
    seconds = max(0, int(now - when))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def log_rows(status: dict[str, Any], now: float) -> list[tuple[object, ...]]:
    """One row per log held, joined with its replication state."""
    origins = (status.get("sync") or {}).get("origins", {})
    rows: list[tuple[object, ...]] = []
    for log in status.get("logs", []):
        member = log.get("member")
        sync = origins.get(member, {})
        own = member == status.get("member")
        frozen = log.get("frozen_reason") or ("frozen" if log.get("frozen") else "")
        rows.append((
            member, log.get("origin"), log.get("size"), "own" if own else "mirror",
            frozen or "-", ago(sync.get("last_success"), now), sync.get("last_source") or "-",
            sync.get("last_error") or "-",
        ))  # fmt: skip
    return rows


def peer_rows(status: dict[str, Any], now: float) -> list[tuple[object, ...]]:
    """One row per peer, from the live sync state when present, else the stored one."""
    live = (status.get("sync") or {}).get("peers", {})
    stored = {p["member"]: p for p in status.get("peers", [])}
    rows: list[tuple[object, ...]] = []
    for member in sorted(set(live) | set(stored)):
        p = {**stored.get(member, {}), **live.get(member, {})}
        backoff = p.get("backoff_until") or 0
        rows.append((
            member, p.get("failures", 0), f"{int(backoff - now)}s" if backoff > now else "-",
            ago(p.get("last_success"), now), p.get("last_error") or "-",
        ))  # fmt: skip
    return rows


def run(args: argparse.Namespace) -> int:
    """GET /v1/status and print it."""
    target = resolve_target(args)

    async def go() -> dict[str, Any]:
        async with NodeClient(target, timeout=args.timeout) as node:
            answer: dict[str, Any] = await node.get("/v1/status")
            return answer

    status = asyncio.run(go())
    if args.json:
        print_json(status)
        return 0
    now = time.time()
    index = status.get("index") or {}
    sync = status.get("sync")
    print_fields([
        ("member", status.get("member")),
        ("node", target.url),
        ("manifest version", status.get("manifest_version")),
        ("ready", "yes" if status.get("ready") else "NO (index loading)"),
        ("own log", f"{status['log']['origin']} size {status['log']['size']}"),
        ("index", " ".join(f"{k}={v}" for k, v in index.items()) or "-"),
        ("replication", "off" if not sync or not sync.get("enabled") else "on"),
    ])  # fmt: skip
    print()
    headers = ("member", "origin", "size", "log", "frozen", "pulled", "from", "last error")
    print_table(log_rows(status, now), headers)
    peers = peer_rows(status, now)
    if peers:
        print()
        print_table(peers, ("peer", "failures", "backoff", "last success", "last error"))
    return 0


def register(subparsers: Any) -> None:
    """Add ``status``."""
    parser = subparsers.add_parser(
        "status",
        help="your node's log and index sizes, mirrored logs and peer sync state",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print the node's answer as JSON")
    add_node_arguments(parser)
    parser.set_defaults(func=run)
