"""Matching on a real ``hashfed serve`` node: reference images hashed locally, submitted over
signed HTTP, then matched — exact and near copies, dihedral, MD5, retraction, local-content
alerts, and every refused input with its code and field."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from federation.core.keys import SigningKey
from federation.core.signals import hamming
from federation.hashing import DIHEDRAL_TRANSFORMS, ImageHashes, hash_file
from tests import dbs
from tests.integration.harness import ClientSpec, Node, client, make_federation

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
IMAGES = SHARED / "images" / "pdq"
LABELS = {"categories": ["csam"], "severity": "high", "confirmed_by": "police"}
NEAR = ("blur-a-little", "blur-a-lot", "high-contrast", "sharpen-a-lot", "shrink-a-lot")

pytestmark = pytest.mark.skipif(not IMAGES.is_dir(), reason=f"{IMAGES} is absent (test images)")


def image(name: str, *, dihedral: bool = False) -> ImageHashes:
    return hash_file(IMAGES / name, dihedral=dihedral)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    urls: dict[str, str] = {}
    if request.param == "postgresql":
        reason = dbs.postgres_unavailable_reason()
        if reason:
            pytest.skip(reason)
        urls["police"] = asyncio.run(dbs.create_pg_database())
    fed = make_federation(tmp_path_factory.mktemp("fed"), database_urls=urls)
    spec = fed.members["police"]
    # a client without the match role, for the 403 check
    writer = ClientSpec("police-writer", ("submit",), SigningKey.generate("police-writer"))
    spec.clients["writer"] = writer
    with spec.config.open("a") as f:
        f.write(
            '[[clients]]\nkey_id = "police-writer"\n'
            f'public_key = "{base64.b64encode(writer.key.public.raw).decode()}"\n'
            'roles = ["submit"]\n'
        )
    running = Node(spec).start()
    try:
        yield running
    finally:
        running.stop()
        if urls:
            asyncio.run(dbs.drop_pg_database(urls["police"]))


async def call(
    node: Node, method: str, path: str, payload: object = None, name: str = "cli"
) -> tuple[int, Any]:
    async with client(node, name) as s, s.request(method, node.url + path, json=payload) as r:
        return r.status, await r.json()


async def submit(node: Node, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    status, body = await call(node, "POST", "/v1/submissions", {"submissions": items})
    assert status == 201, body
    receipts: list[dict[str, Any]] = body["receipts"]
    return receipts


async def match(node: Node, payload: dict[str, Any], name: str = "cli") -> list[dict[str, Any]]:
    status, body = await call(node, "POST", "/v1/match", payload, name)
    assert status == 200, body
    results: list[dict[str, Any]] = body["results"]
    return results


def pdq_item(entry_id: str, hashes: ImageHashes) -> dict[str, Any]:
    signal = {"kind": "pdq", "value": hashes.pdq, "quality": hashes.quality}
    return {"id": entry_id, "signal": signal, "labels": LABELS}


def pdq(hashes: ImageHashes) -> dict[str, str]:
    return {"kind": "pdq", "value": hashes.pdq}


async def test_exact_and_near_copies_match_and_unrelated_does_not(node: Node) -> None:
    orig = image("bridge-mods/aaa-orig.jpg")
    [receipt] = await submit(node, [pdq_item("bridge-orig", orig)])
    queries = [orig] + [image(f"bridge-mods/{n}.jpg") for n in NEAR] + [image("labelme/q0003.jpg")]
    results = await match(node, {"signals": [pdq(h) for h in queries]})
    assert [r["signal_index"] for r in results] == list(range(len(queries)))
    for hashes, result in zip(queries[:-1], results[:-1], strict=True):
        [hit] = [m for m in result["matches"] if m["index"] == receipt["index"]]
        assert hit["distance"] == hamming(orig.pdq, hashes.pdq)
        assert hit["distance"] <= 31
        assert hit["origin"] == "police"
        assert hit["leaf_hash"] == receipt["leaf_hash"]
        assert hit["labels"]["categories"] == ["csam"]
        assert hit["status"] == "active"
        assert "transform" not in hit
    assert results[0]["matches"][0]["distance"] == 0
    assert results[-1]["matches"] == []
    # a tighter radius for this request leaves out the far copies
    [tight] = await match(node, {"signals": [pdq(image("bridge-mods/shrink-a-lot.jpg"))],
                                 "max_distance": 4})  # fmt: skip
    assert tight["matches"] == []


async def test_dihedral_query_finds_the_rotated_copy_with_its_transform(node: Node) -> None:
    orig = image("dih/bridge-1-original.jpg")
    [receipt] = await submit(node, [pdq_item("dih-orig", orig)])
    rotated = image("dih/bridge-2-rotate-90.jpg", dihedral=True)
    assert rotated.dihedral is not None
    variants = rotated.dihedral
    expected = DIHEDRAL_TRANSFORMS[min(range(8), key=lambda k: hamming(variants[k], orig.pdq))]
    [plain] = await match(node, {"signals": [pdq(rotated)]})
    assert receipt["index"] not in [m["index"] for m in plain["matches"]]
    [turned] = await match(node, {"signals": [pdq(rotated)], "dihedral": True})
    [hit] = [m for m in turned["matches"] if m["index"] == receipt["index"]]
    assert hit["transform"] == expected
    assert hit["distance"] <= 31


async def test_md5_exact_match(node: Node) -> None:
    hashes = image("labelme/q0291.jpg")
    md5 = {"kind": "md5", "value": hashes.md5}
    [receipt] = await submit(node, [{"id": "q0291-md5", "signal": md5, "labels": LABELS}])
    other = image("labelme/q1050.jpg").md5
    found, missing = await match(
        node,
        {
            "signals": [
                {"kind": "md5", "value": hashes.md5.upper()},
                {"kind": "md5", "value": other},
            ]
        },
    )
    assert [(m["index"], m["distance"]) for m in found["matches"]] == [(receipt["index"], 0)]
    assert missing["matches"] == []


async def test_retraction_stops_matching(node: Node) -> None:
    hashes = image("labelme/q0746.jpg")
    [receipt] = await submit(node, [pdq_item("q0746", hashes)])
    [before] = await match(node, {"signals": [pdq(hashes)]}, name="reader")
    assert [m["index"] for m in before["matches"]] == [receipt["index"]]
    target = {"origin": "police", "index": receipt["index"], "leaf_hash": receipt["leaf_hash"]}
    retraction = {"id": "ret-q0746", "target": target, "reason": "false-positive"}
    status, body = await call(node, "POST", "/v1/retractions", {"retractions": [retraction]})
    assert status == 201, body
    [after] = await match(node, {"signals": [pdq(hashes)]})
    assert after["matches"] == []


async def test_local_content_alert_on_a_new_matching_submission(node: Node) -> None:
    hosted = image("labelme/q2821.jpg")
    item = {"ref": "upload-2821", "signal": {"kind": "sha256", "value": hosted.sha256}}
    status, body = await call(node, "POST", "/v1/local-content", {"items": [item]})
    assert status == 201, body
    local_id = body["items"][0]["id"]
    _, page = await call(node, "GET", "/v1/alerts")
    start = page["next"]
    sha = {"kind": "sha256", "value": hosted.sha256}
    [receipt] = await submit(node, [{"id": "q2821-sha", "signal": sha, "labels": LABELS}])
    status, page = await call(node, "GET", f"/v1/alerts?after={start}", name="reader")
    assert status == 200, page
    assert [(a["ref"], a["origin"], a["index"], a["distance"]) for a in page["alerts"]] == [
        ("upload-2821", "police", receipt["index"], 0)
    ]
    assert page["alerts"][0]["leaf_hash"] == receipt["leaf_hash"]
    assert isinstance(local_id, int)


GOOD = {"kind": "md5", "value": "0" * 32}
BAD_INPUTS = [
    ({"signals": [{"kind": "pdq", "value": "zz" * 32}]}, "invalid_input", "signals.0.value"),
    ({"signals": [GOOD, {"kind": "md5", "value": "ab"}]}, "invalid_input", "signals.1.value"),
    ({"signals": [GOOD], "max_distance": 64}, "invalid_input", "max_distance"),
    ({"signals": [GOOD], "max_distance": -1}, "invalid_input", "max_distance"),
    ({"signals": [GOOD], "dihedral": "yes"}, "invalid_input", "dihedral"),
    ({"signals": [GOOD] * 1001}, "batch_too_large", "signals"),
    ({"signals": []}, "empty_batch", "signals"),
    ({"signals": [GOOD], "limit": 5}, "invalid_input", "limit"),
    ({"signals": [{**GOOD, "extra": 1}]}, "invalid_input", "signals.0.extra"),
    ({"signals": [{"kind": "phash", "value": "00"}]}, "invalid_input", "signals.0"),
    ({"signals": "x"}, "invalid_input", "signals"),
]


@pytest.mark.parametrize(("payload", "code", "field"), BAD_INPUTS)
async def test_bad_input_is_400_with_code_and_field(
    node: Node, payload: dict[str, Any], code: str, field: str
) -> None:
    status, body = await call(node, "POST", "/v1/match", payload)
    assert (status, body["error"]["code"], body["error"].get("field")) == (400, code, field)


async def test_bad_local_content_names_the_field(node: Node) -> None:
    item = {"ref": "", "signal": GOOD}
    status, body = await call(node, "POST", "/v1/local-content", {"items": [item]})
    assert (status, body["error"]["code"], body["error"]["field"]) == (
        400,
        "invalid_input",
        "items.0.ref",
    )


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("POST", "/v1/match", {"signals": [GOOD]}),
        ("POST", "/v1/local-content", {"items": [{"ref": "r", "signal": GOOD}]}),
        ("GET", "/v1/alerts", None),
    ],
)
async def test_missing_role_is_403(node: Node, method: str, path: str, payload: object) -> None:
    status, body = await call(node, method, path, payload, name="writer")
    assert (status, body["error"]["code"]) == (403, "missing_role")
