"""``hashfed match``: look images or hashes up in every log the member's node holds.

Each QUERY is an image file (hashed here: its PDQ, MD5 and SHA-256 are looked up, so both
edited and exact copies are found; the image never leaves the machine) or a hash: ``HEX`` of
64 characters is taken as PDQ and of 32 as MD5; ``sha256:HEX``, ``pdq:HEX`` and ``md5:HEX``
say the kind explicitly.

Matches are printed as a table (query, origin, index, distance, transform, labels, status);
a query without matches prints ``no match``.  The exit code is 0 whenever results were
printed, match or not — a script decides on the output, not on the exit code (``--json``
prints one object per query: ``{"query", "matches": [...]}``).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federation.cli.nodeclient import NodeClient, add_node_arguments, resolve_target
from federation.cli.output import print_json, print_table
from federation.errors import InputError

_KIND_BY_LENGTH = {64: "pdq", 32: "md5"}


@dataclass(frozen=True)
class Query:
    """One QUERY argument and the signals it is looked up by."""

    name: str
    signals: tuple[dict[str, str], ...]


def parse_query(text: str) -> Query:
    """A file (hashed locally) or ``[KIND:]HEX``; InputError when it is neither."""
    from federation.core.signals import normalise_hex

    path = Path(text)
    if path.is_file():
        from federation.hashing import hash_file

        h = hash_file(path)
        signals = (
            {"kind": "pdq", "value": h.pdq},
            {"kind": "md5", "value": h.md5},
            {"kind": "sha256", "value": h.sha256},
        )
        return Query(text, signals)
    kind, sep, value = text.partition(":")
    if not sep:
        kind, value = _KIND_BY_LENGTH.get(len(text), ""), text
        if not kind:
            raise InputError(
                f"{text!r} is neither a file nor a 64-hex PDQ or 32-hex MD5 hash"
                " (write sha256:HEX for SHA-256)",
                code="invalid_query",
                field="query",
            )
    return Query(text, ({"kind": kind, "value": normalise_hex(kind, value, field="query")},))


def merge_matches(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The matches of several signals of one query, each entry once (closest kept)."""
    best: dict[tuple[str, int], dict[str, Any]] = {}
    for result in results:
        for match in result["matches"]:
            key = (match["origin"], match["index"])
            if key not in best or match["distance"] < best[key]["distance"]:
                best[key] = match
    return sorted(best.values(), key=lambda m: (m["distance"], m["origin"], m["index"]))


async def match_queries(
    node: NodeClient,
    queries: Sequence[Query],
    *,
    max_distance: int | None = None,
    dihedral: bool = False,
) -> list[list[dict[str, Any]]]:
    """One POST /v1/match for all queries; the merged matches per query, in order."""
    signals = [s for q in queries for s in q.signals]
    body: dict[str, Any] = {"signals": signals}
    if max_distance is not None:
        body["max_distance"] = max_distance
    if dihedral:
        body["dihedral"] = True
    results = sorted(
        (await node.post("/v1/match", body))["results"], key=lambda r: r["signal_index"]
    )
    out, at = [], 0
    for query in queries:
        out.append(merge_matches(results[at : at + len(query.signals)]))
        at += len(query.signals)
    return out


def labels_text(labels: dict[str, Any]) -> str:
    """``csam/high/police``: categories, severity, who confirmed."""
    return f"{','.join(labels['categories'])}/{labels['severity']}/{labels['confirmed_by']}"


def run(args: argparse.Namespace) -> int:
    """Hash the queries, ask the node once, print a table (or JSON lines)."""
    if args.max_distance is not None and not 0 <= args.max_distance <= 63:
        raise InputError("--max-distance must be 0..63", field="max_distance")
    queries = [parse_query(q) for q in args.queries]
    if sum(len(q.signals) for q in queries) > 1000:
        raise InputError("at most 1000 hashes per match (a file counts 3)", field="query")
    target = resolve_target(args)

    async def go() -> list[list[dict[str, Any]]]:
        async with NodeClient(target, timeout=args.timeout) as node:
            return await match_queries(
                node, queries, max_distance=args.max_distance, dihedral=args.dihedral
            )

    found = asyncio.run(go())
    rows = []
    for query, matches in zip(queries, found, strict=True):
        if args.json:
            print_json({"query": query.name, "matches": matches})
            continue
        if not matches:
            rows.append((query.name, "no match", "", "", "", "", ""))
        for m in matches:
            labels = labels_text(m["labels"])
            transform = m.get("transform", "-")
            rows.append(
                (query.name, m["origin"], m["index"], m["distance"], transform, labels, m["status"])
            )
    if not args.json:
        print_table(rows, ("query", "origin", "index", "distance", "transform", "labels", "status"))
    return 0


def register(subparsers: Any) -> None:
    """Add ``match``."""
    parser = subparsers.add_parser(
        "match",
        help="look images or hashes up in every log your node holds",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("queries", nargs="+", metavar="QUERY", help="image file or [KIND:]HEX")
    parser.add_argument("--max-distance", type=int, metavar="N", help="PDQ radius (0-63)")
    parser.add_argument("--dihedral", action="store_true", help="also try rotations and flips")
    parser.add_argument("--json", action="store_true", help="one JSON object per query")
    add_node_arguments(parser)
    parser.set_defaults(func=run)
