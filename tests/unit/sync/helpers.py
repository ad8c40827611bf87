"""Test fixtures for replication: fixed-seed keys, a manifest, and an in-memory origin log.

:class:`FakeLog` is a member's log built from real signed entries and checkpoints over
:class:`~federation.core.tlog.MemoryHashStore`, so verification sees exactly what a real node
would serve; tests then tamper with copies of what it produces.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from federation.core.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from federation.core.entries import Submission, leaf_bytes, leaf_hash, sign_entry, verify_leaf
from federation.core.keys import KeyType, PublicKey, SigningKey
from federation.core.labels import Labels
from federation.core.manifest import Manifest, Member
from federation.core.merkle import NODE_PREFIX, verify_consistency, verify_inclusion
from federation.core.note import SignedNote
from federation.core.replication import TrustedState
from federation.core.signals import Md5Signal
from federation.core.tlog import MemoryHashStore
from federation.log.mirror import frontier_positions

LABELS = Labels(categories=("csam",), severity="high", confirmed_by="police")
T0 = 1_700_000_000


def seeded(label: str, name: str, key_type: KeyType = KeyType.ED25519) -> SigningKey:
    return SigningKey.from_seed(name, hashlib.sha256(label.encode()).digest(), key_type)


LOG_KEYS = {
    m: seeded(f"sync test: {m} log", f"{m}.example/hashfed") for m in ("police", "relay", "self")
}
HTTP_KEYS = {m: seeded(f"sync test: {m} http", f"{m}-http") for m in ("police", "relay", "self")}
WITNESS_KEY = seeded("sync test: witness", "witness.example", KeyType.COSIGNATURE_V1)
WITNESS_LOG = seeded("sync test: witness log", "witness.example/hashfed")
WITNESS_HTTP = seeded("sync test: witness http", "witness-http")


def _member(member_id: str, endpoint: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": member_id,
        "name": member_id.title(),
        "roles": ["submitter", "consumer"],
        "endpoint": endpoint,
        "log_origin": f"{member_id}.example/hashfed",
        "log_vkey": LOG_KEYS[member_id].public.vkey(),
        "transport_keys": [
            {
                "key_id": f"{member_id}-http",
                "public_key": base64.b64encode(HTTP_KEYS[member_id].public.raw).decode(),
                "not_before": 0,
            }
        ],
    }
    data.update(changes)
    return data


def make_manifest(
    *,
    endpoints: dict[str, str] | None = None,
    police: dict[str, Any] | None = None,
    witness_quorum: int = 0,
) -> Manifest:
    """Members police (the origin under test), relay and self, plus one witness."""
    urls = {m: f"http://{m}.invalid" for m in ("police", "relay", "self")}
    urls.update(endpoints or {})
    witness = {
        "id": "witness",
        "name": "Witness",
        "roles": ["witness"],
        "endpoint": "http://witness.invalid",
        "log_origin": "witness.example/hashfed",
        "log_vkey": WITNESS_LOG.public.vkey(),
        "witness_vkey": WITNESS_KEY.public.vkey(),
        "transport_keys": [
            {
                "key_id": "witness-http",
                "public_key": base64.b64encode(WITNESS_HTTP.public.raw).decode(),
                "not_before": 0,
            }
        ],
    }
    return Manifest.model_validate(
        {
            "federation": "sync.test",
            "version": 1,
            "issued_at": T0,
            "members": [
                _member("police", urls["police"], **(police or {})),
                _member("relay", urls["relay"]),
                _member("self", urls["self"]),
                witness,
            ],
            "policy": {"witness_quorum": witness_quorum},
            "stewards": [seeded("sync test: steward", "steward").public.vkey()],
            "steward_quorum": 1,
        }
    )


def member_of(manifest: Manifest, member_id: str) -> Member:
    """The member, which the test manifest is known to hold."""
    found = manifest.member(member_id)
    assert found is not None
    return found


def submission(member_id: str, n: int, *, created: int | None = None) -> Submission:
    return Submission(
        origin=member_id,
        id=f"sub-{n}",
        created=T0 + n if created is None else created,
        signal=Md5Signal(value=f"{n:032x}"),
        labels=LABELS,
    )


class FakeLog:
    """One member's log in memory: leaves, stored hashes, signed checkpoints on demand."""

    def __init__(self, member_id: str = "police", key: SigningKey | None = None) -> None:
        self.member_id = member_id
        self.key = key or LOG_KEYS[member_id]
        self.origin = self.key.name
        self.leaves: list[bytes] = []
        self.hashes = MemoryHashStore()

    @property
    def size(self) -> int:
        return len(self.leaves)

    def add(
        self, count: int, *, created: int | None = None, signer: SigningKey | None = None
    ) -> None:
        """Append ``count`` signed submissions (signed by ``signer``, default the log key)."""
        for _ in range(count):
            n = self.size
            signed = sign_entry(submission(self.member_id, n, created=created), signer or self.key)
            self.add_leaf(leaf_bytes(signed))

    def add_duplicate(self, of: int) -> bytes:
        """Append a validly signed leaf reusing the entry id of leaf ``of`` (another leaf:
        what only a misbehaving origin signs); returns it."""
        created = T0 + 7_000 + self.size  # any other content would do
        leaf = leaf_bytes(sign_entry(submission(self.member_id, of, created=created), self.key))
        self.add_leaf(leaf)
        return leaf

    def add_leaf(self, leaf: bytes) -> None:
        self.leaves.append(leaf)
        self.hashes.append(leaf_hash(leaf))

    def note(self, size: int | None = None) -> str:
        """The signed checkpoint at ``size`` (default: all leaves)."""
        n = self.size if size is None else size
        return sign_checkpoint(
            Checkpoint(self.origin, n, self.hashes.root(n)), self.key
        ).serialise()

    def page(self, start: int, end: int) -> list[tuple[int, bytes]]:
        return [(i, self.leaves[i]) for i in range(start, end)]

    def proof(self, m: int, n: int) -> list[bytes]:
        return self.hashes.consistency_proof(m, n) if 0 < m < n else []

    def trusted(self, size: int) -> TrustedState:
        """What a mirror that verified the first ``size`` leaves holds."""
        frontier = tuple(self.hashes.read_hashes(frontier_positions(size)))
        return TrustedState(size, self.hashes.root(size), frontier, self.note(size))


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2: the root an inclusion proof of ``leaf`` (a leaf hash) leads to."""
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if fn & 1 or fn == sn:
            r = hashlib.sha256(NODE_PREFIX + p + r).digest()
            while fn & 1 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = hashlib.sha256(NODE_PREFIX + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0, "proof too short for the tree size"
    return r


def check_duplicate_record(
    record: dict[str, Any], key: PublicKey, origin: str, earlier: int, later: int
) -> None:
    """Verify a ``duplicate_entry_id`` evidence record the way a third party would, with
    nothing but the origin's log key (spec/sync.md §5.1): the checkpoint is signed, both
    leaves are signed entries with one id, both inclusion proofs lead to one root, and that
    root is the checkpoint's or proven a prefix of it."""
    assert record["kind"] == "duplicate_entry_id"
    cp = open_checkpoint(SignedNote.parse(record["note_b"]), key, expected_origin=origin)
    first, second = record["leaves"]
    assert (first["index"], second["index"]) == (earlier, later)
    leaves = [base64.b64decode(x["leaf"]) for x in (first, second)]
    assert len({verify_leaf(leaf, key).entry.id for leaf in leaves}) == 1
    size = record["size"]
    roots = set()
    for x, leaf in zip((first, second), leaves, strict=True):
        proof = [base64.b64decode(p) for p in x["proof"]]
        root = root_from_inclusion(leaf_hash(leaf), x["index"], size, proof)
        verify_inclusion(leaf_hash(leaf), x["index"], size, proof, root)
        roots.add(root)
    assert len(roots) == 1
    root = roots.pop()
    if size == cp.size:
        assert (root, record["proof"]) == (cp.root, [])
    else:
        proof = [base64.b64decode(p) for p in record["proof"]]
        verify_consistency(size, cp.size, proof, root, cp.root)
