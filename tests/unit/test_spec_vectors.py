"""spec/vectors/requests.json and proofs.json: committed, reproducible and accepted by the node.

Each vector is checked three ways: the generator (``tests/unit/kat_protocol.py``) reproduces
the committed file byte for byte; the values are recomputed here from the spec's rules with
plain hashlib/base64 where that is short; and the node's own verifiers accept them (and
refuse every tampered copy), so a second implementation that matches the vectors
interoperates with this one.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from federation.core.checkpoint import open_checkpoint
from federation.core.entries import leaf_hash, verify_leaf
from federation.core.httpsig import content_digest
from federation.core.keys import KeyType, PublicKey
from federation.core.merkle import root_from_leaf_hashes, verify_consistency, verify_inclusion
from federation.core.receipt import verify_receipt
from federation.core.tlog import MemoryHashStore
from federation.errors import AuthError, VerificationError
from federation.server.auth import NonceCache, PeerKey, PeerKeyRegistry, RequestView, verify_request
from tests.unit import kat_protocol

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors"


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((VECTORS / name).read_text("utf-8"))
    return doc


@pytest.mark.parametrize("name", ["requests.json", "proofs.json"])
def test_committed_vectors_are_reproducible(name: str) -> None:
    built = kat_protocol.render(kat_protocol.build_vectors()[name])
    assert (VECTORS / name).read_text("utf-8") == built, f"regenerate {name} (see kat_protocol)"


# -- signed requests -------------------------------------------------------------------------

REQUESTS = load("requests.json")
REQUEST_IDS = [r["name"] for r in REQUESTS["requests"]]


def _public() -> PublicKey:
    return PublicKey.from_raw(
        REQUESTS["sender"], KeyType.ED25519, base64.b64decode(REQUESTS["public_key"])
    )


def _resolver() -> PeerKeyRegistry:
    key = PeerKey(
        keyid=REQUESTS["keyid"],
        public_key=_public(),
        member_id=REQUESTS["sender"],
        not_before=REQUESTS["created"] - 3600,
        not_after=None,
        roles=frozenset({"consumer"}),
    )
    return PeerKeyRegistry([key])


def _view(vector: dict[str, Any], **changes: Any) -> RequestView:
    headers = {name.lower(): value for name, value in vector["headers"].items()}
    headers.update(changes.pop("headers", {}))
    fields: dict[str, Any] = {
        "method": vector["method"],
        "target": vector["target"],
        "headers": headers,
        "body": vector["body"].encode(),
    }
    fields.update(changes)
    return RequestView(**fields)


def _verify(view: RequestView, *, now: int | None = None, nonces: NonceCache | None = None) -> str:
    principal = verify_request(
        view,
        resolver=_resolver(),
        nonces=NonceCache() if nonces is None else nonces,
        destination=REQUESTS["destination"],
        now=REQUESTS["verify_at"] if now is None else now,
    )
    assert principal.member_id is not None
    return principal.member_id


def test_seed_gives_the_public_key() -> None:
    key = kat_protocol.seeded(kat_protocol.TRANSPORT_SEED_STRING, REQUESTS["sender"])
    assert (
        hashlib.sha256(kat_protocol.TRANSPORT_SEED_STRING.encode()).hexdigest()
        == (REQUESTS["transport_seed_hex"])
    )
    assert base64.b64encode(key.public.raw).decode() == REQUESTS["public_key"]


@pytest.mark.parametrize("vector", REQUESTS["requests"], ids=REQUEST_IDS)
def test_request_vector_follows_the_profile(vector: dict[str, Any]) -> None:
    """Rebuild digest, Signature-Input and signature base by hand from spec/auth.md."""
    body = vector["body"].encode()
    headers = vector["headers"]
    assert hashlib.sha256(body).hexdigest() == vector["body_sha256_hex"]
    components = ['"@method"', '"@path"', '"@query"']
    if body:
        digest = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
        assert headers["Content-Digest"] == digest == content_digest(body)
        components.append('"content-digest"')
    else:
        assert "Content-Digest" not in headers
    components.append('"hashfed-destination"')
    params = (
        f"({' '.join(components)});created={REQUESTS['created']};expires={REQUESTS['expires']}"
        f';nonce="{vector["nonce"]}";keyid="{REQUESTS["keyid"]}";alg="ed25519";tag="hashfed"'
    )
    assert headers["Signature-Input"] == f"hashfed={params}"
    path, _, query = vector["target"].partition("?")
    lines = [f'"@method": {vector["method"]}', f'"@path": {path}', f'"@query": ?{query}']
    if body:
        lines.append(f'"content-digest": {headers["Content-Digest"]}')
    lines.append(f'"hashfed-destination": {REQUESTS["destination"]}')
    lines.append(f'"@signature-params": {params}')
    assert vector["signature_base"] == "\n".join(lines)
    signature = bytes.fromhex(vector["signature_hex"])
    assert headers["Signature"] == f"hashfed=:{base64.b64encode(signature).decode()}:"
    _public().verify(vector["signature_base"].encode("ascii"), signature)
    assert headers["Hashfed-Destination"] == REQUESTS["destination"]


@pytest.mark.parametrize("vector", REQUESTS["requests"], ids=REQUEST_IDS)
def test_node_accepts_request_vector_once(vector: dict[str, Any]) -> None:
    nonces = NonceCache()
    assert _verify(_view(vector), nonces=nonces) == REQUESTS["sender"]
    with pytest.raises(AuthError) as replay:
        _verify(_view(vector), nonces=nonces)
    assert replay.value.code == "replayed_nonce"


@pytest.mark.parametrize("vector", REQUESTS["requests"], ids=REQUEST_IDS)
@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"method": "PUT"}, "bad_signature"),
        ({"target": "/v1/status"}, "bad_signature"),
        ({"headers": {"hashfed-destination": "other.example"}}, "wrong_destination"),
        ({"now": "expired"}, "signature_expired"),
        ({"now": "future"}, "signature_from_future"),
    ],
)
def test_node_refuses_altered_request_vector(
    vector: dict[str, Any], change: dict[str, Any], code: str
) -> None:
    change = dict(change)
    when = change.pop("now", None)
    now = {
        None: None,
        "expired": REQUESTS["expires"] + 1,
        "future": REQUESTS["created"] - 61,
    }[when]
    with pytest.raises(AuthError) as refused:
        _verify(_view(vector, **change), now=now)
    assert refused.value.code == code


def test_node_refuses_altered_body() -> None:
    vector = next(r for r in REQUESTS["requests"] if r["body"])
    with pytest.raises(AuthError) as refused:
        _verify(_view(vector, body=vector["body"].encode() + b" "))
    assert refused.value.code == "digest_mismatch"


def test_window_bounds_are_inclusive() -> None:
    vector = REQUESTS["requests"][0]
    for now in (REQUESTS["created"] - 60, REQUESTS["expires"]):
        assert _verify(_view(vector), now=now) == REQUESTS["sender"]


# -- proofs ----------------------------------------------------------------------------------

PROOFS = load("proofs.json")
LOG_KEY = PublicKey.parse(PROOFS["log_vkey"])
LEAVES = [leaf["leaf"].encode() for leaf in PROOFS["leaves"]]


def _store() -> MemoryHashStore:
    store = MemoryHashStore()
    for leaf in LEAVES:
        store.append(leaf_hash(leaf))
    return store


def _flipped(proof: list[bytes], which: int) -> list[bytes]:
    item = bytearray(proof[which])
    item[which % 32] ^= 0x01
    return [*proof[:which], bytes(item), *proof[which + 1 :]]


def test_tree_has_13_signed_canonical_leaves() -> None:
    assert len(LEAVES) == 13 == kat_protocol.TREE_SIZE
    kinds = []
    for leaf, vector in zip(LEAVES, PROOFS["leaves"], strict=True):
        signed = verify_leaf(leaf, LOG_KEY)
        kinds.append(signed.entry.kind)
        assert signed.entry.origin == PROOFS["member"]
        assert hashlib.sha256(b"\x00" + leaf).hexdigest() == vector["leaf_hash_hex"]
    assert kinds == ["submission"] * 10 + ["retraction", "opinion", "opinion"]


def test_roots_match_the_node_tree() -> None:
    hashes = [leaf_hash(leaf) for leaf in LEAVES]
    store = _store()
    for size, root_hex in PROOFS["roots_hex"].items():
        n = int(size)
        assert root_from_leaf_hashes(hashes[:n]).hex() == root_hex
        if n:
            assert store.root(n).hex() == root_hex


def test_checkpoints_are_signed_by_the_log_key() -> None:
    for size, note in PROOFS["checkpoints"].items():
        cp = open_checkpoint(note, LOG_KEY, expected_origin=PROOFS["log_origin"])
        assert cp.size == int(size)
        assert cp.root.hex() == PROOFS["roots_hex"][size]


def test_every_inclusion_proof_verifies_and_matches_the_node() -> None:
    store = _store()
    assert len(PROOFS["inclusion"]) == 1 + 7 + 8 + 13
    for vector in PROOFS["inclusion"]:
        index, size = vector["index"], vector["size"]
        proof = [base64.b64decode(h) for h in vector["proof"]]
        root = bytes.fromhex(PROOFS["roots_hex"][str(size)])
        leaf = leaf_hash(LEAVES[index])
        verify_inclusion(leaf, index, size, proof, root)
        assert store.inclusion_proof(index, size) == proof
        for which in range(len(proof)):
            with pytest.raises(VerificationError):
                verify_inclusion(leaf, index, size, _flipped(proof, which), root)


def test_every_consistency_proof_verifies_and_matches_the_node() -> None:
    store = _store()
    for vector in PROOFS["consistency"]:
        first, second = vector["from"], vector["to"]
        proof = [base64.b64decode(h) for h in vector["proof"]]
        root1 = bytes.fromhex(PROOFS["roots_hex"][str(first)])
        root2 = bytes.fromhex(PROOFS["roots_hex"][str(second)])
        verify_consistency(first, second, proof, root1, root2)
        assert store.consistency_proof(first, second) == proof
        for which in range(len(proof)):
            with pytest.raises(VerificationError):
                verify_consistency(first, second, _flipped(proof, which), root1, root2)


def test_receipt_verifies_offline_with_the_log_key() -> None:
    receipt = PROOFS["receipt"]
    verified = verify_receipt(receipt["text"], LOG_KEY)
    assert verified.index == receipt["index"]
    assert verified.checkpoint.size == 13
    assert (
        leaf_hash(LEAVES[receipt["index"]]).hex()
        == (PROOFS["leaves"][receipt["index"]]["leaf_hash_hex"])
    )
    other = PublicKey.parse(LOG_KEY.vkey())  # same key parses back identically
    assert other == LOG_KEY
    wrong_index = receipt["text"].replace(f"index {receipt['index']}\n", "index 6\n")
    with pytest.raises(VerificationError) as refused:
        verify_receipt(wrong_index, LOG_KEY)
    assert refused.value.code == "inclusion_proof_invalid"
