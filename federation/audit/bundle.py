"""Offline audit bundles (spec/audit.md §1): everything needed to audit logs with no network.

A bundle is JSON Lines (optionally gzip-compressed, detected by its magic bytes), one record per
line, in this order::

    {"type":"header","format":"hashfed-audit-bundle/v1","created":<unix s>,"source":<text>}
    {"type":"manifest","signed_manifest":{...}}           the manifest the exporter ran with
    then per log:
    {"type":"log","member_id":<id>,"size":<n>}             starts the log's section
    {"type":"checkpoint","member_id":<id>,"note":<text>}   one or more, the largest first
    {"type":"consistency","member_id":<id>,"from":a,"to":b,"proof":[base64...]}   zero or more
    {"type":"entry","member_id":<id>,"index":i,"leaf":<base64>}   exactly n, indices 0..n-1

Nothing in a bundle is trusted: the auditor checks every note, proof and leaf against the
manifest it was given (``--manifest``), exactly as it would over HTTP; the bundle's own
manifest is carried for reference only.  Entry lines are found by position, so the reader
indexes a bundle with one pass and then streams each log's leaves without holding them.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from federation.errors import InputError, NotFoundError

BUNDLE_FORMAT = "hashfed-audit-bundle/v1"
_GZIP_MAGIC = b"\x1f\x8b"
_ENTRY_PREFIX = b'{"type":"entry"'


def _open_read(path: Path) -> IO[bytes]:
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == _GZIP_MAGIC:
        return cast(IO[bytes], gzip.open(path, "rb"))  # noqa: SIM115 - owned by the source
    return path.open("rb")


def _invalid(path: Path, why: str) -> InputError:
    return InputError(f"bundle {path}: {why}", code="invalid_bundle")


class BundleWriter:
    """Writes a bundle record by record (gzip when the file name ends in ``.gz``)."""

    def __init__(self, path: Path, *, created: int, source: str, manifest: dict[str, Any]) -> None:
        self.path = path
        # Owned by the writer and closed by close(): records are written over many awaits.
        if path.suffix == ".gz":
            self._out = cast(IO[bytes], gzip.open(path, "wb"))  # noqa: SIM115
        else:
            self._out = path.open("wb")  # noqa: SIM115
        self._write(
            {"type": "header", "format": BUNDLE_FORMAT, "created": created, "source": source}
        )
        self._write({"type": "manifest", "signed_manifest": manifest})

    def _write(self, record: dict[str, Any]) -> None:
        self._out.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")

    def log(self, member_id: str, size: int, notes: list[str]) -> None:
        """Start a log section with its checkpoints (largest first)."""
        self._write({"type": "log", "member_id": member_id, "size": size})
        for note in notes:
            self._write({"type": "checkpoint", "member_id": member_id, "note": note})

    def consistency(self, member_id: str, size1: int, size2: int, proof: list[bytes]) -> None:
        """A consistency proof between two checkpoints of the current log."""
        encoded = [base64.b64encode(p).decode() for p in proof]
        self._write(
            {
                "type": "consistency",
                "member_id": member_id,
                "from": size1,
                "to": size2,
                "proof": encoded,
            }
        )

    def entries(self, member_id: str, leaves: list[tuple[int, bytes]]) -> None:
        """Entry lines (the caller writes indices 0..size-1 in order)."""
        for index, leaf in leaves:
            self._write(
                {
                    "type": "entry",
                    "member_id": member_id,
                    "index": index,
                    "leaf": base64.b64encode(leaf).decode(),
                }
            )

    def close(self) -> None:
        """Flush and close the file."""
        self._out.close()


@dataclass
class _Section:
    size: int
    notes: list[str] = field(default_factory=list)
    proofs: dict[tuple[int, int], list[bytes]] = field(default_factory=dict)
    offset: int = 0
    count: int = 0


class BundleSource:
    """A bundle as a :class:`~federation.audit.sources.LogSource` (see module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"bundle:{path.name}"
        self.manifest: dict[str, Any] | None = None
        self._sections: dict[str, _Section] = {}
        self._file = _open_read(path)
        self._cursor: tuple[str, int, int] | None = None  # member, next index, file offset
        try:
            self._index()
        except BaseException:
            self._file.close()
            raise

    def _records(self) -> Iterator[tuple[int, bytes]]:
        f = self._file
        f.seek(0)
        while True:
            offset = f.tell()
            line = f.readline()
            if not line:
                return
            yield offset, line

    def _index(self) -> None:
        current: _Section | None = None
        first = True
        for offset, line in self._records():
            if line.startswith(_ENTRY_PREFIX):
                if current is None:
                    raise _invalid(self.path, "entry line before any log record")
                if current.count == 0:
                    current.offset = offset
                current.count += 1
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise _invalid(self.path, f"line at byte {offset} is not JSON") from None
            kind = record.get("type") if isinstance(record, dict) else None
            if first:
                if kind != "header" or record.get("format") != BUNDLE_FORMAT:
                    raise _invalid(self.path, f"does not start with a {BUNDLE_FORMAT} header")
                first = False
            elif kind == "manifest":
                self.manifest = record.get("signed_manifest")
            elif kind == "log":
                member, size = record.get("member_id"), record.get("size")
                if not isinstance(member, str) or not isinstance(size, int):
                    raise _invalid(self.path, "log record needs member_id and size")
                current = self._sections[member] = _Section(size)
            elif kind == "checkpoint" and current is not None:
                current.notes.append(str(record.get("note")))
            elif kind == "consistency" and current is not None:
                key = (int(record["from"]), int(record["to"]))
                current.proofs[key] = [base64.b64decode(p) for p in record.get("proof", [])]
            else:
                raise _invalid(self.path, f"unexpected record {kind!r} at byte {offset}")

    async def checkpoints(self, member_id: str) -> list[str]:
        """Checkpoint notes of the member's log in the bundle ([] when absent)."""
        section = self._sections.get(member_id)
        return list(section.notes) if section else []

    def _seek(self, member_id: str, start: int) -> _Section:
        section = self._sections.get(member_id)
        if section is None:
            raise NotFoundError(f"{self.name} holds no log of {member_id!r}", code="unknown_log")
        if self._cursor is None or self._cursor[:2] != (member_id, start):
            self._file.seek(section.offset)
            for _ in range(min(start, section.count)):
                self._file.readline()
        else:
            self._file.seek(self._cursor[2])
        return section

    async def entries(self, member_id: str, start: int, limit: int) -> list[tuple[int, bytes]]:
        """Leaves ``[start, start+limit)`` as the bundle holds them (lines are positional)."""
        section = self._seek(member_id, start)
        out: list[tuple[int, bytes]] = []
        for _ in range(max(0, min(limit, section.count - start))):
            line = self._file.readline()
            try:
                record = json.loads(line)
                out.append((int(record["index"]), base64.b64decode(record["leaf"], validate=True)))
            except (ValueError, KeyError, TypeError):
                raise _invalid(self.path, f"bad entry line in the log of {member_id!r}") from None
        self._cursor = (member_id, start + len(out), self._file.tell())
        return out

    async def consistency(self, member_id: str, size1: int, size2: int) -> list[bytes]:
        """A consistency proof the bundle carries."""
        section = self._sections.get(member_id)
        proof = section.proofs.get((size1, size2)) if section else None
        if proof is None:
            raise NotFoundError(
                f"{self.name} has no consistency proof {size1}->{size2} for {member_id!r}",
                code="proof_not_in_bundle",
            )
        return proof

    async def inclusion(self, member_id: str, index: int, size: int) -> list[bytes]:
        """Bundles carry every leaf, so the auditor never needs an inclusion proof from one."""
        raise NotFoundError(f"{self.name} carries no inclusion proofs", code="proof_not_in_bundle")

    async def close(self) -> None:
        """Close the file."""
        self._file.close()
