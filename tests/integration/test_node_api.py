"""One real ``hashfed serve`` node over loopback HTTP: writes, receipts, reads, auth, bad input.

The node runs once per module (SQLite, and PostgreSQL where a server answers); each test
talks to it through real signed HTTP.  Every refused request is followed by a check that the
log did not grow, because "nothing half-written remains" is the property that matters.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from federation.client.signer import signature_headers
from federation.core.checkpoint import open_checkpoint
from federation.core.keys import SigningKey
from federation.core.merkle import verify_consistency, verify_inclusion
from federation.core.receipt import verify_receipt
from tests import dbs
from tests.integration.harness import Node, client, make_federation

LABELS = {"categories": ["csam"], "severity": "high", "confirmed_by": "police"}
MAX_BODY = 65536
MAX_BATCH = 50


def item(n: int, *, quality: int = 90, entry_id: str | None = None) -> dict[str, Any]:
    """A PDQ submission as a client sends it."""
    return {
        "id": entry_id or f"item-{n}",
        "signal": {"kind": "pdq", "value": f"{n:064x}", "quality": quality},
        "labels": LABELS,
    }


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    root: Path = tmp_path_factory.mktemp("fed")
    urls: dict[str, str] = {}
    if request.param == "postgresql":
        reason = dbs.postgres_unavailable_reason()
        if reason:
            pytest.skip(reason)
        urls["police"] = asyncio.run(dbs.create_pg_database())
    fed = make_federation(root, database_urls=urls, max_body_bytes=MAX_BODY, max_batch=MAX_BATCH)
    running = Node(fed.members["police"]).start()
    try:
        yield running
    finally:
        running.stop()
        if urls:
            asyncio.run(dbs.drop_pg_database(urls["police"]))


async def log_size(node: Node) -> int:
    async with aiohttp.ClientSession() as s, s.get(f"{node.url}/v1/log/checkpoint") as r:
        assert r.status == 200
        return int((await r.text()).split("\n")[1])


async def error_of(response: aiohttp.ClientResponse) -> tuple[int, str, str | None]:
    body = await response.json()
    return response.status, body["error"]["code"], body["error"].get("field")


async def post(node: Node, path: str, payload: object, name: str = "cli") -> aiohttp.ClientResponse:
    async with (
        client(node, name) as signed,
        signed.request("POST", node.url + path, json=payload) as r,
    ):
        await r.read()
        return r


async def submit(node: Node, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    async with (
        client(node) as signed,
        signed.request("POST", f"{node.url}/v1/submissions", json={"submissions": items}) as r,
    ):
        body = await r.json()
        assert r.status == 201, body
        receipts: list[dict[str, Any]] = body["receipts"]
        return receipts


# --- writes and receipts ---------------------------------------------------------------------


async def test_submission_receipt_verifies_offline_with_the_log_key(node: Node) -> None:
    receipts = await submit(node, [item(1), item(2, quality=50)])
    key = node.spec.log_key.public  # only the member's public log key
    for r in receipts:
        verified = verify_receipt(r["receipt"], key)
        assert verified.index == r["index"]
        assert verified.entry.entry.origin == "police"
        assert verified.entry.model_dump(mode="json", exclude_none=True) == r["entry"]
        cp = open_checkpoint(r["checkpoint"], key)
        path = [base64.b64decode(h) for h in r["inclusion_proof"]]
        verify_inclusion(bytes.fromhex(r["leaf_hash"]), r["index"], cp.size, path, cp.root)
        assert r["existing"] is False
    assert receipts[1]["index"] == receipts[0]["index"] + 1


async def test_retry_with_same_id_returns_the_same_entry(node: Node) -> None:
    first = await submit(node, [item(10)])
    size = await log_size(node)
    retry = await submit(node, [item(10)])
    assert retry[0]["existing"] is True
    assert (retry[0]["index"], retry[0]["leaf_hash"]) == (first[0]["index"], first[0]["leaf_hash"])
    assert await log_size(node) == size
    conflict = await post(node, "/v1/submissions", {"submissions": [item(11, entry_id="item-10")]})
    assert (conflict.status, (await conflict.json())["error"]["code"]) == (409, "id_conflict")


async def test_retraction_and_opinion_point_at_a_submission(node: Node) -> None:
    [sub] = await submit(node, [item(20)])
    target = {"origin": "police", "index": sub["index"], "leaf_hash": sub["leaf_hash"]}
    r = await post(
        node,
        "/v1/retractions",
        {"retractions": [{"id": "ret-20", "target": target, "reason": "error"}]},
    )
    assert r.status == 201
    body = await r.json()
    assert body["receipts"][0]["entry"]["entry"]["kind"] == "retraction"
    verify_receipt(body["receipts"][0]["receipt"], node.spec.log_key.public)
    again = await post(
        node,
        "/v1/retractions",
        {"retractions": [{"id": "ret-20b", "target": target, "reason": "error"}]},
    )
    assert await error_of(again) == (409, "already_retracted", "retractions.0.target")
    op = await post(
        node,
        "/v1/opinions",
        {"opinions": [{"id": "op-20", "target": target, "verdict": "true_positive"}]},
    )
    assert op.status == 201


# --- public reads ---------------------------------------------------------------------------


async def test_log_reads_and_proofs_verify(node: Node) -> None:
    receipts = await submit(node, [item(n) for n in range(30, 35)])
    key = node.spec.log_key.public
    async with aiohttp.ClientSession() as s:
        first = open_checkpoint(receipts[0]["checkpoint"], key)
        await submit(node, [item(36)])
        async with s.get(f"{node.url}/v1/logs/police/checkpoint") as r:
            latest = open_checkpoint(await r.text(), key)
        async with s.get(
            f"{node.url}/v1/log/proof/consistency", params={"from": first.size, "to": latest.size}
        ) as r:
            proof = [base64.b64decode(h) for h in (await r.json())["proof"]]
        verify_consistency(first.size, latest.size, proof, first.root, latest.root)
        async with s.get(
            f"{node.url}/v1/log/entries", params={"start": receipts[0]["index"], "limit": 2}
        ) as r:
            page = await r.json()
        assert page["size"] == latest.size
        assert [e["index"] for e in page["entries"]] == [receipts[0]["index"], receipts[1]["index"]]
        leaf = base64.b64decode(page["entries"][0]["leaf"])
        assert json.loads(leaf) == receipts[0]["entry"]
        index = receipts[2]["index"]
        async with s.get(
            f"{node.url}/v1/log/proof/inclusion", params={"index": index, "size": latest.size}
        ) as r:
            path = [base64.b64decode(h) for h in (await r.json())["proof"]]
        verify_inclusion(
            bytes.fromhex(receipts[2]["leaf_hash"]), index, latest.size, path, latest.root
        )
        for url, field in (
            ("/v1/log/entries?limit=1001", "limit"),
            ("/v1/log/entries?start=-1", "start"),
            ("/v1/log/proof/inclusion?index=x&size=1", "index"),
            (f"/v1/log/proof/inclusion?index=0&size={latest.size + 1}", "size"),
            ("/v1/log/proof/consistency?from=2", "to"),
        ):
            async with s.get(node.url + url) as r:
                status, _, got = await error_of(r)
                assert (status, got) == (400, field), url
        async with s.get(f"{node.url}/v1/logs/nobody/checkpoint") as r:
            assert await error_of(r) == (404, "unknown_log", None)
        async with s.get(f"{node.url}/v1/manifest") as r:
            assert (await r.json())["manifest"]["federation"] == "testfed"
        async with s.get(f"{node.url}/metrics") as r:
            text = await r.text()
        assert 'hashfed_log_size{origin="police.example/hashfed",member="police"}' in text
        async with s.get(f"{node.url}/nope") as r:
            assert await error_of(r) == (404, "not_found", None)
        async with s.delete(f"{node.url}/v1/submissions") as r:
            assert (await error_of(r))[:2] == (405, "method_not_allowed")


async def test_status_needs_a_signature_and_reports_the_log(node: Node) -> None:
    async with aiohttp.ClientSession() as s, s.get(f"{node.url}/v1/status") as r:
        assert await error_of(r) == (401, "signature_missing", None)
    async with (
        client(node, "reader") as signed,
        signed.request("GET", f"{node.url}/v1/status") as r,
    ):
        body = await r.json()
    assert body["member"] == "police"
    assert body["log"]["size"] == await log_size(node)
    assert body["peers"] == []


# --- authentication --------------------------------------------------------------------------


def _headers(
    node: Node,
    key: SigningKey,
    keyid: str,
    method: str,
    path: str,
    body: bytes | None,
    *,
    now: float | None = None,
    destination: str = "police",
) -> dict[str, str]:
    return signature_headers(
        key,
        keyid=keyid,
        method=method,
        url=node.url + path,
        destination=destination,
        body=body,
        now=time.time() if now is None else now,
    )


async def test_every_authentication_failure_has_its_code(node: Node) -> None:
    cli = node.spec.clients["cli"]
    body = json.dumps({"submissions": [item(40)]}).encode()
    path = "/v1/submissions"
    stranger = SigningKey.generate("stranger")
    cases = {
        "unknown_key": _headers(node, stranger, "stranger", "POST", path, body),
        "bad_signature": _headers(node, stranger, cli.key_id, "POST", path, body),
        "signature_expired": _headers(
            node, cli.key, cli.key_id, "POST", path, body, now=time.time() - 400
        ),
        "signature_from_future": _headers(
            node, cli.key, cli.key_id, "POST", path, body, now=time.time() + 600
        ),
        "wrong_destination": _headers(
            node, cli.key, cli.key_id, "POST", path, body, destination="other"
        ),
    }
    size = await log_size(node)
    async with aiohttp.ClientSession() as s:
        for code, headers in cases.items():
            headers["Content-Type"] = "application/json"
            async with s.post(node.url + path, data=body, headers=headers) as r:
                assert await error_of(r) == (401, code, None), code
        tampered = _headers(node, cli.key, cli.key_id, "POST", path, body)
        tampered["Content-Type"] = "application/json"
        async with s.post(
            node.url + path, data=body.replace(b"item-40", b"item-41"), headers=tampered
        ) as r:
            assert await error_of(r) == (401, "digest_mismatch", None)
        replay = _headers(node, cli.key, cli.key_id, "GET", "/v1/status", None)
        async with s.get(node.url + "/v1/status", headers=replay) as r:
            assert r.status == 200
        async with s.get(node.url + "/v1/status", headers=replay) as r:
            assert await error_of(r) == (401, "replayed_nonce", None)
    forbidden = await post(node, path, {"submissions": [item(42)]}, name="reader")
    assert await error_of(forbidden) == (403, "missing_role", None)
    assert await log_size(node) == size
    async with aiohttp.ClientSession() as s, s.get(f"{node.url}/metrics") as r:
        assert 'hashfed_auth_failures_total{code="replayed_nonce"} 1' in await r.text()


# --- bad input -------------------------------------------------------------------------------


BAD_INPUT = [
    pytest.param(b'{"submissions": [', 400, "invalid_json", None, id="malformed-json"),
    pytest.param(
        {"submissions": [{**item(50), "colour": "red"}]},
        400,
        "invalid_input",
        "submissions.0.colour",
        id="unknown-field",
    ),
    pytest.param(
        {
            "submissions": [
                {**item(51), "signal": {"kind": "pdq", "value": "0" * 64, "quality": "high"}}
            ]
        },
        400,
        "invalid_input",
        "submissions.0.signal.quality",
        id="wrong-type",
    ),
    pytest.param(
        {"submissions": [{**item(52), "signal": {"kind": "md5", "value": "xyz"}}]},
        400,
        "invalid_input",
        "submissions.0.signal.value",
        id="bad-hash",
    ),
    pytest.param(
        {"submissions": [item(53, quality=49)]},
        422,
        "pdq_quality_too_low",
        "submissions.0.signal.quality",
        id="quality-too-low",
    ),
    pytest.param(
        {"submissions": [item(60 + n) for n in range(MAX_BATCH + 1)]},
        400,
        "batch_too_large",
        "submissions",
        id="batch-over-limit",
    ),
    pytest.param({"submissions": []}, 400, "empty_batch", "submissions", id="empty-batch"),
    pytest.param(
        {"submissions": [item(54), item(55, quality=10)]},
        422,
        "pdq_quality_too_low",
        "submissions.1.signal.quality",
        id="second-item-bad-first-not-written",
    ),
]


@pytest.mark.parametrize(("payload", "status", "code", "field"), BAD_INPUT)
async def test_bad_input_is_refused_with_its_code_and_field(
    node: Node, payload: object, status: int, code: str, field: str | None
) -> None:
    size = await log_size(node)
    async with client(node) as signed:
        if isinstance(payload, bytes):
            request = signed.request(
                "POST",
                f"{node.url}/v1/submissions",
                body=payload,
                headers={"Content-Type": "application/json"},
            )
        else:
            request = signed.request("POST", f"{node.url}/v1/submissions", json=payload)
        async with request as r:
            assert await error_of(r) == (status, code, field)
    assert await log_size(node) == size


async def test_body_too_large_and_wrong_content_type(node: Node) -> None:
    size = await log_size(node)
    async with client(node) as signed:
        big = json.dumps({"submissions": [item(70)], "pad": "x" * MAX_BODY}).encode()
        async with signed.request(
            "POST",
            f"{node.url}/v1/submissions",
            body=big,
            headers={"Content-Type": "application/json"},
        ) as r:
            assert (await error_of(r))[:2] == (413, "body_too_large")
        text = json.dumps({"submissions": [item(71)]}).encode()
        async with signed.request(
            "POST", f"{node.url}/v1/submissions", body=text, headers={"Content-Type": "text/plain"}
        ) as r:
            assert await error_of(r) == (415, "unsupported_media_type", "Content-Type")
    assert await log_size(node) == size
