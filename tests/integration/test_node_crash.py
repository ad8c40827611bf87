"""SIGKILL during a stream of submissions, then restart: nothing acknowledged is lost and the
log the restarted node serves is an extension of every checkpoint seen before the crash."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from federation.core.checkpoint import open_checkpoint
from federation.core.merkle import verify_consistency, verify_inclusion
from federation.core.receipt import verify_receipt
from tests.integration.harness import Node, client, make_federation

LABELS = {"categories": ["ncii-deepfake"], "severity": "high", "confirmed_by": "hotline"}
ACKED_BEFORE_KILL = 30


async def _stream(node: Node, worker: int, acked: list[dict[str, Any]]) -> None:
    """Submit batches of 3 until the node dies; keep every acknowledged receipt."""
    n = 0
    async with client(node) as signed:
        while True:
            items = [
                {
                    "id": f"w{worker}-{n}-{k}",
                    "signal": {"kind": "sha256", "value": f"{worker:08x}{n:048x}{k:08x}"},
                    "labels": LABELS,
                }
                for k in range(3)
            ]
            n += 1
            try:
                async with signed.request(
                    "POST", f"{node.url}/v1/submissions", json={"submissions": items}
                ) as r:
                    if r.status != 201:
                        return
                    acked.extend((await r.json())["receipts"])
            except (TimeoutError, aiohttp.ClientError):
                return


@pytest.mark.slow
async def test_sigkill_mid_stream_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    fed = make_federation(tmp_path)
    spec = fed.members["police"]
    node = Node(spec).start()
    acked: list[dict[str, Any]] = []
    try:
        workers = [asyncio.create_task(_stream(node, w, acked)) for w in range(3)]
        while len(acked) < ACKED_BEFORE_KILL:
            await asyncio.sleep(0.01)
            assert not all(w.done() for w in workers), "every stream stopped before the kill"
        node.kill()  # SIGKILL: no shutdown, requests in flight
        await asyncio.gather(*workers)
    finally:
        node.kill()
    key = spec.log_key.public
    seen = [open_checkpoint(r["checkpoint"], key) for r in acked]
    last_seen = max(seen, key=lambda cp: cp.size)

    restarted = Node(spec).start()
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{restarted.url}/v1/log/checkpoint") as r:
                latest = open_checkpoint(await r.text(), key)
            assert latest.size >= last_seen.size
            async with s.get(
                f"{restarted.url}/v1/log/proof/consistency",
                params={"from": last_seen.size, "to": latest.size},
            ) as r:
                proof = [base64.b64decode(h) for h in (await r.json())["proof"]]
            verify_consistency(last_seen.size, latest.size, proof, last_seen.root, latest.root)
            for receipt in acked:
                verify_receipt(receipt["receipt"], key)
                index = receipt["index"]
                async with s.get(
                    f"{restarted.url}/v1/log/entries", params={"start": index, "limit": 1}
                ) as r:
                    [stored] = (await r.json())["entries"]
                leaf = base64.b64decode(stored["leaf"])
                assert leaf == _extra(receipt["receipt"])
                async with s.get(
                    f"{restarted.url}/v1/log/proof/inclusion",
                    params={"index": index, "size": latest.size},
                ) as r:
                    path = [base64.b64decode(h) for h in (await r.json())["proof"]]
                verify_inclusion(
                    bytes.fromhex(receipt["leaf_hash"]), index, latest.size, path, latest.root
                )
        # the restarted node keeps appending on top of the recovered log
        async with (
            client(restarted) as signed,
            signed.request(
                "POST",
                f"{restarted.url}/v1/submissions",
                json={
                    "submissions": [
                        {
                            "id": "after",
                            "signal": {"kind": "md5", "value": "a" * 32},
                            "labels": LABELS,
                        }
                    ]
                },
            ) as r,
        ):
            assert r.status == 201
            assert (await r.json())["receipts"][0]["index"] == latest.size
    finally:
        assert restarted.stop() == 0


def _extra(receipt: str) -> bytes:
    """The leaf bytes a receipt carries on its ``extra`` line."""
    line = receipt.split("\n")[1]
    assert line.startswith("extra ")
    return base64.b64decode(line.removeprefix("extra "))
