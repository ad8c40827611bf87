"""In-memory federations for auditor tests: real signed entries and checkpoints, no network.

:class:`MemLog` is one member's log over :class:`~federation.core.tlog.MemoryHashStore`;
:class:`MemSource` serves any set of logs the way a node's read routes do, so tests can build
honest nodes, lagging mirrors, forks under one key, and nodes that drop or alter leaves.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from federation.core.checkpoint import Checkpoint, sign_checkpoint
from federation.core.cosignature import cosign
from federation.core.entries import (
    EntryRef,
    Opinion,
    Retraction,
    Submission,
    entry_leaf_hash,
    leaf_bytes,
    leaf_hash,
    parse_leaf,
    sign_entry,
)
from federation.core.keys import KeyType, SigningKey
from federation.core.labels import Labels
from federation.core.manifest import Manifest
from federation.core.note import SignedNote, add_signatures
from federation.core.signals import Md5Signal
from federation.core.tlog import MemoryHashStore
from federation.errors import NotFoundError

T0 = 1_700_000_000
MEMBERS = ("hotline", "platform", "police")
LABELS = Labels(categories=("csam",), severity="high", confirmed_by="police")


def seeded(label: str, name: str, key_type: KeyType = KeyType.ED25519) -> SigningKey:
    return SigningKey.from_seed(name, hashlib.sha256(label.encode()).digest(), key_type)


LOG_KEYS = {m: seeded(f"audit test: {m} log", f"{m}.example/hashfed") for m in MEMBERS}
WITNESS_KEY = seeded("audit test: witness", "witness.example", KeyType.COSIGNATURE_V1)


def make_manifest(
    *,
    suspended: dict[str, int] | None = None,
    suspended_size: dict[str, int] | None = None,
    witness_quorum: int = 0,
) -> Manifest:
    """Members hotline, platform (the witness) and police; ``suspended`` maps a member to its
    ``suspended_at``, ``suspended_size`` to its suspension at a log size (either or both)."""
    members: list[dict[str, Any]] = []
    for m in MEMBERS:
        data: dict[str, Any] = {
            "id": m,
            "name": m.title(),
            "roles": ["submitter", "consumer"],
            "endpoint": f"http://{m}.invalid",
            "log_origin": f"{m}.example/hashfed",
            "log_vkey": LOG_KEYS[m].public.vkey(),
            "transport_keys": [
                {
                    "key_id": f"{m}-http",
                    "public_key": base64.b64encode(seeded(m, f"{m}-http").public.raw).decode(),
                    "not_before": 0,
                }
            ],
        }
        if suspended and m in suspended:
            data.update(status="suspended", suspended_at=suspended[m])
        if suspended_size and m in suspended_size:
            data.update(status="suspended", suspended_size=suspended_size[m])
        if m == "platform":
            data["roles"] = ["consumer", "witness"]
            data["witness_vkey"] = WITNESS_KEY.public.vkey()
        members.append(data)
    return Manifest.model_validate(
        {
            "federation": "audit.test",
            "version": 1,
            "issued_at": T0,
            "members": members,
            "policy": {"witness_quorum": witness_quorum},
            "stewards": [seeded("audit test: steward", "steward").public.vkey()],
            "steward_quorum": 1,
        }
    )


class MemLog:
    """One member's log: leaves, stored hashes, checkpoints signed on demand."""

    def __init__(self, member_id: str, key: SigningKey | None = None) -> None:
        self.member_id = member_id
        self.key = key or LOG_KEYS[member_id]
        self.leaves: list[bytes] = []
        self.hashes = MemoryHashStore()

    @property
    def size(self) -> int:
        return len(self.leaves)

    def add_leaf(self, leaf: bytes) -> int:
        self.leaves.append(leaf)
        self.hashes.append(leaf_hash(leaf))
        return self.size - 1

    def submit(self, count: int = 1, *, created: int | None = None, tag: str = "") -> None:
        for _ in range(count):
            n = self.size
            entry = Submission(
                origin=self.member_id,
                id=f"sub{tag}-{n}",
                created=T0 + n if created is None else created,
                signal=Md5Signal(value=hashlib.md5(f"{tag}{n}".encode()).hexdigest()),  # noqa: S324
                labels=LABELS,
            )
            self.add_leaf(leaf_bytes(sign_entry(entry, self.key)))

    def duplicate(self, of: int) -> int:
        """Append another signed submission reusing the entry id of leaf ``of`` (what only a
        misbehaving origin does); returns its index."""
        entry = Submission(
            origin=self.member_id,
            id=parse_leaf(self.leaves[of]).entry.id,
            created=T0 + 50_000 + self.size,
            signal=Md5Signal(value=hashlib.md5(f"again{self.size}".encode()).hexdigest()),  # noqa: S324
            labels=LABELS,
        )
        return self.add_leaf(leaf_bytes(sign_entry(entry, self.key)))

    def ref(self, index: int) -> EntryRef:
        signed = parse_leaf(self.leaves[index])
        return EntryRef(origin=self.member_id, index=index, leaf_hash=entry_leaf_hash(signed).hex())

    def retract(self, target: EntryRef, reason: str = "false-positive") -> int:
        entry = Retraction.model_validate(
            {
                "origin": self.member_id,
                "id": f"ret-{self.size}",
                "created": T0 + self.size,
                "target": target.model_dump(),
                "reason": reason,
            }
        )
        return self.add_leaf(leaf_bytes(sign_entry(entry, self.key)))

    def opine(self, target: EntryRef, verdict: str = "false_positive") -> int:
        entry = Opinion.model_validate(
            {
                "origin": self.member_id,
                "id": f"op-{self.size}",
                "created": T0 + self.size,
                "target": target.model_dump(),
                "verdict": verdict,
            }
        )
        return self.add_leaf(leaf_bytes(sign_entry(entry, self.key)))

    def note(self, size: int | None = None, *, cosigned: bool = False) -> str:
        n = self.size if size is None else size
        signed = sign_checkpoint(Checkpoint(self.key.name, n, self.hashes.root(n)), self.key)
        if cosigned:
            signed = add_signatures(signed, [cosign(signed.text, WITNESS_KEY, T0 + 5)])
        return signed.serialise()


class MemSource:
    """Serves logs like a node's public read routes (tests mutate ``leaves``/``notes``)."""

    def __init__(self, name: str, logs: dict[str, MemLog], **notes: str) -> None:
        self.name = name
        self.logs = logs
        self.notes = notes
        self.dropped: set[tuple[str, int]] = set()
        self.replaced: dict[tuple[str, int], bytes] = {}

    async def checkpoints(self, member_id: str) -> list[str]:
        if member_id in self.notes:
            return [self.notes[member_id]]
        log = self.logs.get(member_id)
        return [log.note()] if log is not None else []

    async def entries(self, member_id: str, start: int, limit: int) -> list[tuple[int, bytes]]:
        log = self.logs[member_id]
        out = []
        for i in range(start, min(start + limit, log.size)):
            if (member_id, i) in self.dropped:
                continue
            out.append((i, self.replaced.get((member_id, i), log.leaves[i])))
        return out

    async def consistency(self, member_id: str, size1: int, size2: int) -> list[bytes]:
        return self.logs[member_id].hashes.consistency_proof(size1, size2)

    async def inclusion(self, member_id: str, index: int, size: int) -> list[bytes]:
        if member_id not in self.logs:
            raise NotFoundError("no such log")
        return self.logs[member_id].hashes.inclusion_proof(index, size)

    async def close(self) -> None:
        return None


def parse(note: str) -> SignedNote:
    return SignedNote.parse(note)
