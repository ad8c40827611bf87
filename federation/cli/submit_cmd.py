"""``hashfed submit``: hash images locally and append their hashes to the member's own log.

Images never leave the machine: each FILE is hashed here and three entries are submitted for
it — its PDQ hash (perceptual, survives re-encoding and small edits), its MD5 and its SHA-256
(exact copies, as many platforms' existing block lists use them).  A PDQ hash whose quality is
below 50 is unreliable and the federation refuses it, so it is skipped with a notice and the
exact hashes still go in.  ``--pdq HEX --quality N``, ``--md5 HEX`` and ``--sha256 HEX`` submit
hashes computed elsewhere.

Entry ids default to ``KIND-HASH`` (e.g. ``md5-0cc1...``): deterministic, so running the same
command again is an idempotent retry — the node answers with the stored receipt
(``existing``).  Submitting the same hash again with other labels is therefore a conflict
(409 ``id_conflict``); pass ``--id`` to make a separate entry.

``--from-csv FILE`` submits many hashes.  The first row is a header; columns (any order):

  kind          pdq, md5 or sha256 (required)
  value         the hash as hex (required)
  quality       PDQ quality 0-100 (required for pdq)
  labels        categories separated by ';' (default: the --label options)
  severity      low, medium, high or critical (default: --severity)
  confirmed_by  police, hotline or platform (default: --confirmed-by)
  case_ref      opaque case reference (optional)
  id            entry id (default KIND-HASH)

Every row is checked before anything is sent; rows go in batches of at most 1000.

A receipt (c2sp.org/tlog-proof@v1) is saved per entry in ``--receipts-dir`` (default
``receipts/``) as ``ID.tlog-proof``; check one offline with ``hashfed verify-receipt``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from federation.cli.nodeclient import NodeClient, add_node_arguments, resolve_target
from federation.cli.output import ProgressBar, notice, print_json, print_table
from federation.errors import InputError

MAX_BATCH = 1000
MIN_PDQ_QUALITY = 50
CSV_COLUMNS = ("kind", "value", "quality", "labels", "severity", "confirmed_by", "case_ref", "id")

Item = dict[str, Any]
"""One element of ``submissions`` in the request body."""


def labels_of(categories: Sequence[str], severity: str | None, confirmed_by: str | None) -> Any:
    """Validated labels as JSON; InputError naming the label field at fault."""
    from pydantic import ValidationError

    from federation.core.labels import Labels

    try:
        labels = Labels.model_validate(
            {"categories": list(categories), "severity": severity, "confirmed_by": confirmed_by}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "labels"
        name = {"categories": "label", "confirmed_by": "confirmed-by"}.get(field, field)
        raise InputError(
            f"--{name}: {first['msg']}", code="invalid_labels", field=f"labels.{field}"
        ) from None
    return labels.model_dump(mode="json")


def make_item(
    kind: str, value: str, labels: Any, *, quality: int | None = None,
    case_ref: str | None = None, entry_id: str | None = None, field: str = "value",
) -> Item:  # fmt: skip
    """One submission; the hash normalised, the id defaulting to ``KIND-HASH``."""
    from federation.core.ids import check_entry_id
    from federation.core.labels import check_case_ref
    from federation.core.signals import normalise_hex

    value = normalise_hex(kind, value, field=field)
    signal: dict[str, Any] = {"kind": kind, "value": value}
    if kind == "pdq":
        if quality is None:
            raise InputError("a PDQ hash needs its quality (--quality N)", field="quality")
        if not 0 <= quality <= 100:
            raise InputError("PDQ quality must be 0..100", field="quality")
        signal["quality"] = quality
    item: Item = {"id": entry_id or f"{kind}-{value}", "signal": signal, "labels": labels}
    try:
        check_entry_id(item["id"])
        if case_ref is not None:
            item["case_ref"] = check_case_ref(case_ref)
    except ValueError as exc:
        raise InputError(str(exc), field="case_ref" if case_ref else "id") from None
    return item


def items_for_file(
    path: Path, labels: Any, case_ref: str | None, entry_id: str | None
) -> list[Item]:
    """PDQ (when its quality allows), MD5 and SHA-256 entries of one image file."""
    from federation.hashing import hash_file

    h = hash_file(path)
    ids = {k: f"{entry_id}-{k}" if entry_id else None for k in ("pdq", "md5", "sha256")}
    out = []
    if h.quality >= MIN_PDQ_QUALITY:
        out.append(make_item("pdq", h.pdq, labels, quality=h.quality, case_ref=case_ref,
                             entry_id=ids["pdq"]))  # fmt: skip
    else:
        notice(f"{path}: PDQ quality {h.quality} < {MIN_PDQ_QUALITY}; submitting MD5/SHA-256 only")
    out.append(make_item("md5", h.md5, labels, case_ref=case_ref, entry_id=ids["md5"]))
    out.append(make_item("sha256", h.sha256, labels, case_ref=case_ref, entry_id=ids["sha256"]))
    return out


def items_from_csv(path: Path, args: argparse.Namespace) -> list[Item]:
    """Every CSV row as a submission; InputError naming the row and column at fault."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        unknown = [c for c in header if c not in CSV_COLUMNS]
        if unknown or not {"kind", "value"} <= set(header):
            raise InputError(
                f"{path}: header must name kind and value and only {', '.join(CSV_COLUMNS)}"
                f" (got {', '.join(header) or 'nothing'})",
                code="invalid_csv",
            )
        items = []
        for row_number, row in enumerate(reader, start=2):
            try:
                items.append(_csv_item(row, args))
            except InputError as exc:
                where = f"{path}:{row_number}" + (f" column {exc.field}" if exc.field else "")
                raise InputError(
                    f"{where}: {exc.message}", code=exc.code, field=exc.field
                ) from None
    if not items:
        raise InputError(f"{path} has no rows", code="empty_batch")
    return items


def _csv_item(row: dict[str, str | None], args: argparse.Namespace) -> Item:
    def cell(name: str) -> str | None:
        value = (row.get(name) or "").strip()
        return value or None

    categories = [c.strip() for c in (cell("labels") or "").split(";") if c.strip()]
    labels = labels_of(
        categories or args.label or [],
        cell("severity") or args.severity,
        cell("confirmed_by") or args.confirmed_by,
    )
    quality_text = cell("quality")
    try:
        quality = int(quality_text) if quality_text is not None else None
    except ValueError:
        raise InputError(f"quality {quality_text!r} is not a number", field="quality") from None
    return make_item(
        cell("kind") or "", cell("value") or "", labels, quality=quality,
        case_ref=cell("case_ref") or args.case_ref, entry_id=cell("id"),
    )  # fmt: skip


def collect_items(args: argparse.Namespace) -> tuple[list[Item], list[str]]:
    """The submissions the arguments ask for, with a source name per item (for output)."""
    given = [x for x in (args.pdq, args.md5, args.sha256) if x]
    if args.from_csv and (args.files or given):
        raise InputError("give --from-csv alone, without FILE or hash options", field="from_csv")
    if args.from_csv:
        rows = items_from_csv(args.from_csv, args)
        return rows, [f"{args.from_csv}:{n + 2}" for n in range(len(rows))]
    if not args.files and not given:
        raise InputError("nothing to submit: give FILE..., --pdq, --md5, --sha256 or --from-csv")
    if args.id and len(args.files) + len(given) > 1:
        raise InputError("--id names one entry; give one FILE or one hash with it", field="id")
    labels = labels_of(args.label or [], args.severity, args.confirmed_by)
    items: list[Item] = []
    sources: list[str] = []
    for path in args.files:
        for item in items_for_file(Path(path), labels, args.case_ref, args.id):
            items.append(item)
            sources.append(str(path))
    for kind in ("pdq", "md5", "sha256"):
        value = getattr(args, kind)
        if value:
            quality = args.quality if kind == "pdq" else None
            items.append(make_item(kind, value, labels, quality=quality, case_ref=args.case_ref,
                                   entry_id=args.id, field=kind))  # fmt: skip
            sources.append(f"--{kind}")
    return items, sources


async def submit_items(
    node: NodeClient, items: Sequence[Item], *, batch_size: int = MAX_BATCH,
    on_batch: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """POST ``items`` in batches; the receipts in item order."""
    receipts: list[dict[str, Any]] = []
    for first in range(0, len(items), batch_size):
        batch = list(items[first : first + batch_size])
        answer = await node.post("/v1/submissions", {"submissions": batch})
        receipts.extend(answer["receipts"])
        if on_batch is not None:
            on_batch(len(batch))
    return receipts


def save_receipt(directory: Path, receipt: dict[str, Any]) -> Path:
    """Write one receipt as ``ID.tlog-proof`` (ids use only ``A-Za-z0-9._:-``)."""
    from federation.cli.keys_cmd import key_file_stem

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{key_file_stem(receipt['entry']['entry']['id'])}.tlog-proof"
    path.write_text(receipt["receipt"], encoding="utf-8")
    return path


def run(args: argparse.Namespace) -> int:
    """Hash, validate everything, then submit and print/save one line per receipt."""
    if not 1 <= args.batch_size <= MAX_BATCH:
        raise InputError(f"--batch-size must be 1..{MAX_BATCH}", field="batch_size")
    items, sources = collect_items(args)
    target = resolve_target(args)

    async def go() -> list[dict[str, Any]]:
        async with NodeClient(target, timeout=args.timeout) as node:
            with ProgressBar(
                len(items), "submitted", enabled=None if args.from_csv else False
            ) as bar:
                return await submit_items(node, items, batch_size=args.batch_size,
                                          on_batch=bar.advance)  # fmt: skip

    receipts = asyncio.run(go())
    rows = []
    for receipt, source in zip(receipts, sources, strict=True):
        entry = receipt["entry"]["entry"]
        saved = save_receipt(args.receipts_dir, receipt) if not args.no_receipts else None
        record = {
            "source": source, "id": entry["id"], "kind": entry["signal"]["kind"],
            "origin": entry["origin"], "index": receipt["index"],
            "leaf_hash": receipt["leaf_hash"], "existing": receipt["existing"],
            "receipt_file": str(saved) if saved else None,
        }  # fmt: skip
        if args.json:
            print_json(record)
        else:
            rows.append((source, record["kind"], record["origin"], record["index"],
                         "existing" if record["existing"] else "new", saved or "-"))  # fmt: skip
    if not args.json:
        print_table(rows, ("source", "kind", "origin", "index", "", "receipt"))
    return 0


def register(subparsers: Any) -> None:
    """Add ``submit``."""
    parser = subparsers.add_parser(
        "submit",
        help="hash images locally and submit their hashes to your node",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help="image files to hash and submit")
    parser.add_argument("--pdq", metavar="HEX", help="a PDQ hash computed elsewhere")
    parser.add_argument("--quality", type=int, metavar="N", help="its PDQ quality (0-100)")
    parser.add_argument("--md5", metavar="HEX", help="an MD5 hash")
    parser.add_argument("--sha256", metavar="HEX", help="a SHA-256 hash")
    parser.add_argument("--from-csv", type=Path, metavar="FILE", help="bulk submit (see above)")
    parser.add_argument(
        "--label",
        action="append",
        metavar="CATEGORY",
        help="csam, csam-ai-generated, ncii, ncii-deepfake (repeatable)",
    )
    parser.add_argument("--severity", choices=("low", "medium", "high", "critical"))
    parser.add_argument("--confirmed-by", choices=("police", "hotline", "platform"))
    parser.add_argument("--case-ref", metavar="REF", help="opaque case reference")
    parser.add_argument("--id", metavar="ID", help="entry id (default KIND-HASH)")
    parser.add_argument("--receipts-dir", type=Path, default=Path("receipts"), metavar="DIR")
    parser.add_argument("--no-receipts", action="store_true", help="do not save receipt files")
    parser.add_argument("--batch-size", type=int, default=MAX_BATCH, metavar="N")
    parser.add_argument("--json", action="store_true", help="one JSON object per receipt")
    add_node_arguments(parser)
    parser.set_defaults(func=run)
