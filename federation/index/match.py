"""The match facade: one object holding the PDQ and the two exact indexes, keyed by entry.

Indexed values are referenced by the log entry that carried them (:class:`EntryRef`: origin
member and log index), because that is what a platform needs to act on a match — who vouched
for it and where to fetch the proof.  For PDQ the refs live in two numpy columns beside the
index rows (an origin code and a log index), so 10M hashes cost no Python object each.
Results are sorted by (distance, origin, index): deterministic, so two nodes holding the same
entries answer the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from federation.core.signals import DIHEDRAL_TRANSFORMS, SignalKind, normalise_hex
from federation.errors import InputError
from federation.index.pdq import Hits, PdqIndex


@dataclass(frozen=True, order=True)
class EntryRef:
    """A log entry: which member's log and where in it."""

    origin: str
    """Member id of the log the entry is in."""
    index: int
    """Position of the entry in that log."""


@dataclass(frozen=True)
class Match:
    """One indexed entry that matches a query."""

    ref: EntryRef
    """The entry that carried the matching signal."""
    kind: SignalKind
    """Signal kind matched."""
    distance: int
    """Hamming distance for PDQ; 0 for exact kinds."""
    transform: str | None = None
    """For dihedral PDQ queries: the query transform that matched best."""


class ExactIndex:
    """Exact lookup of MD5 or SHA-256 digests: digest bytes → set of entries carrying it."""

    def __init__(self, kind: SignalKind) -> None:
        self.kind = kind
        self._by_value: dict[bytes, set[EntryRef]] = {}
        self._by_ref: dict[EntryRef, bytes] = {}

    def add(self, value: str, ref: EntryRef) -> None:
        """Index ``value`` (hex) for ``ref``; re-adding the same pair is a no-op."""
        key = bytes.fromhex(normalise_hex(self.kind, value))
        old = self._by_ref.get(ref)
        if old is not None and old != key:
            raise InputError(f"{ref} already indexed with another {self.kind}", code="conflict")
        self._by_value.setdefault(key, set()).add(ref)
        self._by_ref[ref] = key

    def remove(self, ref: EntryRef) -> bool:
        """Stop matching ``ref``; True if it was indexed."""
        key = self._by_ref.pop(ref, None)
        if key is None:
            return False
        refs = self._by_value[key]
        refs.discard(ref)
        if not refs:
            del self._by_value[key]
        return True

    def query(self, value: str) -> list[EntryRef]:
        """Entries carrying exactly ``value``, sorted by (origin, index)."""
        key = bytes.fromhex(normalise_hex(self.kind, value, field="value"))
        return sorted(self._by_value.get(key, ()))

    def __contains__(self, ref: object) -> bool:
        return ref in self._by_ref

    def __len__(self) -> int:
        return len(self._by_ref)


class _RefColumns:
    """Row → EntryRef as two growable numpy columns, and EntryRef → row for removal."""

    def __init__(self) -> None:
        self.origins: list[str] = []
        self._codes: dict[str, int] = {}
        self.origin_code = np.zeros(0, dtype=np.int32)
        self.log_index = np.zeros(0, dtype=np.int64)
        # Per origin: log indexes and rows, appended in arrival order, sorted lazily.
        self._per_origin: dict[int, list[npt.NDArray[np.int64]]] = {}
        self._sorted: dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = {}

    def code(self, origin: str) -> int:
        if origin not in self._codes:
            self._codes[origin] = len(self.origins)
            self.origins.append(origin)
        return self._codes[origin]

    def put(self, rows: npt.NDArray[np.int64], origin: str, indexes: npt.NDArray[np.int64]) -> None:
        need = int(rows.max()) + 1
        if need > self.log_index.shape[0]:
            cap = max(need, int(self.log_index.shape[0] * 1.25), 1024)
            self.origin_code = np.resize(self.origin_code, cap)
            self.log_index = np.resize(self.log_index, cap)
        code = self.code(origin)
        self.origin_code[rows] = code
        self.log_index[rows] = indexes
        self._per_origin.setdefault(code, []).append(np.stack([indexes, rows]))
        self._sorted.pop(code, None)

    def find(self, ref: EntryRef) -> int | None:
        code = self._codes.get(ref.origin)
        if code is None or code not in self._per_origin:
            return None
        if code not in self._sorted:
            both = np.concatenate(self._per_origin[code], axis=1)
            order = np.argsort(both[0], kind="stable")
            self._per_origin[code] = [both[:, order]]
            self._sorted[code] = (both[0, order], both[1, order])
        keys, rows = self._sorted[code]
        at = int(np.searchsorted(keys, ref.index))
        return int(rows[at]) if at < keys.shape[0] and keys[at] == ref.index else None


class MatchIndex:
    """PDQ radius search plus MD5/SHA-256 exact lookup behind one entry-keyed interface."""

    def __init__(self, pdq: PdqIndex | None = None) -> None:
        self.pdq = pdq or PdqIndex()
        self.md5 = ExactIndex(SignalKind.MD5)
        self.sha256 = ExactIndex(SignalKind.SHA256)
        self._refs = _RefColumns()

    def add(self, kind: SignalKind | str, value: str, ref: EntryRef) -> None:
        """Index one signal carried by entry ``ref``; it matches from now on."""
        if kind == SignalKind.PDQ:
            self.add_pdq_batch([value], ref.origin, [ref.index])
        else:
            self._exact(kind).add(value, ref)

    def add_pdq_batch(self, values: Sequence[str], origin: str, indexes: Sequence[int]) -> None:
        """Index many PDQ hashes of one origin at once (replication applies them in bulk)."""
        if len(values) != len(indexes):
            raise InputError("values and indexes differ in length", code="invalid_input")
        if not values:
            return
        hexes = [normalise_hex("pdq", v) for v in values]
        rows = self.pdq.add(hexes)
        self._refs.put(rows, origin, np.asarray(indexes, dtype=np.int64))

    def remove(self, ref: EntryRef) -> bool:
        """Stop matching the signal of entry ``ref`` (a retraction); True if it was indexed."""
        if self.md5.remove(ref) or self.sha256.remove(ref):
            return True
        row = self._refs.find(ref)
        return row is not None and self.pdq.remove([row]) == 1

    def match(
        self,
        kind: SignalKind | str,
        value: str,
        max_distance: int | None = None,
        *,
        dihedral: Sequence[str] | None = None,
    ) -> list[Match]:
        """Entries matching one signal, sorted by (distance, origin, index).

        For PDQ, ``dihedral`` may give the query image's 8 dihedral hashes (as from
        :func:`federation.hashing.hash_bytes` with ``dihedral=True``); each entry is then
        reported once, with the best distance and the transform that achieved it.
        """
        if kind != SignalKind.PDQ:
            refs = self._exact(kind).query(value)
            return [Match(ref, SignalKind(kind), 0) for ref in refs]
        if dihedral is not None:
            hits = self.pdq.query_dihedral(
                [normalise_hex("pdq", v) for v in dihedral], max_distance
            )
        else:
            hits = self.pdq.query(normalise_hex("pdq", value), max_distance)
        return self._pdq_matches(hits)

    def _pdq_matches(self, hits: Hits) -> list[Match]:
        codes = self._refs.origin_code[hits.ids]
        names = np.array(self._refs.origins, dtype=object)[codes] if len(hits) else codes
        logs = self._refs.log_index[hits.ids]
        order = sorted(range(len(hits)), key=lambda i: (hits.distances[i], names[i], logs[i]))
        out = []
        for i in order:
            tr = None if hits.transforms is None else DIHEDRAL_TRANSFORMS[int(hits.transforms[i])]
            ref = EntryRef(str(names[i]), int(logs[i]))
            out.append(Match(ref, SignalKind.PDQ, int(hits.distances[i]), tr))
        return out

    def _exact(self, kind: SignalKind | str) -> ExactIndex:
        if kind == SignalKind.MD5:
            return self.md5
        if kind == SignalKind.SHA256:
            return self.sha256
        raise InputError(f"unknown signal kind {kind!r}", code="invalid_signal_kind", field="kind")
