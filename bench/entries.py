"""Entry signing, verification, leaf encoding and parsing rates, next to raw pynacl.

Our verify does model dump + RFC 8785 encoding + Ed25519; the raw figure is pynacl verifying
a message of the same length.  Target: our verify rate ≥ 0.8 × raw.  Verification of a
replicated entry starts from leaf bytes, so ``verify_leaf`` (strict parse + canonical check +
signature, one encoding) is the number that bounds pull throughput.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import nacl.signing

from federation.core.entries import (
    Submission,
    leaf_bytes,
    parse_leaf,
    sign_entry,
    signing_payload,
    verify_entry,
    verify_leaf,
)
from federation.core.keys import DOMAIN_ENTRY, SigningKey
from federation.core.labels import Category, ConfirmedBy, Labels, Severity
from federation.core.signals import PdqSignal


def _rates(ops: list[tuple[str, Callable[[int], object]]], n: int, rounds: int) -> list[float]:
    """Operations per second of each ``fn(i)`` over ``n`` calls, best of ``rounds``.

    Rounds are interleaved (every operation once per round) and timed in process CPU time,
    so that on a shared machine someone else's burst of load neither inflates one row nor
    counts the time we spent waiting for a core.
    """
    best = [float("inf")] * len(ops)
    for _ in range(rounds):
        for k, (_, fn) in enumerate(ops):
            start = time.process_time()
            for i in range(n):
                fn(i)
            best[k] = min(best[k], time.process_time() - start)
    return [n / b for b in best]


def run(quick: bool) -> None:
    n = 300 if quick else 2000
    key = SigningKey.from_seed("bench.example", hashlib.sha256(b"bench entries").digest())
    labels = Labels(
        categories=(Category.CSAM,), severity=Severity.HIGH, confirmed_by=ConfirmedBy.POLICE
    )
    entries = [
        Submission(
            origin="bench.example",
            id=f"bench-{i:08d}",
            created=1_700_000_000 + i,
            signal=PdqSignal(value=hashlib.sha256(i.to_bytes(8, "big")).hexdigest(), quality=90),
            labels=labels,
            case_ref=f"CR-{i:08d}",
        )
        for i in range(n)
    ]
    signed = [sign_entry(e, key) for e in entries]
    leaves = [leaf_bytes(s) for s in signed]
    public = key.public

    messages = [DOMAIN_ENTRY + signing_payload(e) for e in entries]
    raw_key = nacl.signing.SigningKey(key.seed)
    raw_verify = raw_key.verify_key
    raw_sigs = [raw_key.sign(m).signature for m in messages]

    ops: list[tuple[str, Callable[[int], object]]] = [
        ("raw pynacl sign", lambda i: raw_key.sign(messages[i])),
        ("sign_entry", lambda i: sign_entry(entries[i], key)),
        ("raw pynacl verify", lambda i: raw_verify.verify(messages[i], raw_sigs[i])),
        ("verify_entry", lambda i: verify_entry(signed[i], public)),
        ("leaf_bytes", lambda i: leaf_bytes(signed[i])),
        ("parse_leaf", lambda i: parse_leaf(leaves[i])),
        ("parse_leaf+verify_entry", lambda i: verify_entry(parse_leaf(leaves[i]), public)),
        ("verify_leaf", lambda i: verify_leaf(leaves[i], public)),
    ]
    rows = list(zip([name for name, _ in ops], _rates(ops, n, 3 if quick else 7), strict=True))
    rates = dict(rows)
    print(f"  {n} PDQ submissions, leaf ~{len(leaves[0])} bytes, message {len(messages[0])} bytes")
    print(f"  {'operation':<26}{'entries/s':>12}")
    for name, rate in rows:
        print(f"  {name:<26}{rate:>12,.0f}")
    sign_ratio = rates["sign_entry"] / rates["raw pynacl sign"]
    verify_ratio = rates["verify_entry"] / rates["raw pynacl verify"]
    pull_ratio = rates["verify_leaf"] / rates["raw pynacl verify"]
    print(f"  sign_entry / raw sign        {sign_ratio:.2f}")
    print(f"  verify_entry / raw verify    {verify_ratio:.2f}  (target >= 0.80)")
    print(f"  verify_leaf / raw verify     {pull_ratio:.2f}  (bytes from a peer to verified)")
