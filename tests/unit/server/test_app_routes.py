"""The app in-process (aiohttp test server, SQLite): matcher wiring, readiness, status, metrics,
request ids, public/private route split and node start-up checks."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer, make_mocked_request

from federation.client.signer import SignedSession
from federation.config import load_config
from federation.core.keys import SigningKey
from federation.errors import ConfigError
from federation.keyfile import save_private_key
from federation.node import open_context
from federation.server.app import create_app, is_public
from federation.server.context import MatchItem, NodeContext
from federation.store import Store
from tests.integration.harness import Federation, make_federation

LABELS = {"categories": ["csam"], "severity": "high", "confirmed_by": "police"}


class FakeMatcher:
    """Records what the node hands the match service."""

    def __init__(self) -> None:
        self.ready = False
        self.items: list[MatchItem] = []

    async def load(self, store: Store) -> None:
        return None

    async def on_entries(self, items: Sequence[MatchItem]) -> None:
        self.items.extend(items)

    def stats(self) -> Mapping[str, int]:
        return {"pdq": len(self.items), "md5": 0}


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return make_federation(tmp_path, max_batch=5)


@pytest.fixture
async def ctx(fed: Federation) -> AsyncIterator[NodeContext]:
    context = await open_context(load_config(fed.members["police"].config, env={}))
    yield dataclasses.replace(context, matcher=FakeMatcher())
    await context.store.close()


@pytest.fixture
async def server(ctx: NodeContext) -> AsyncIterator[TestServer]:
    srv = TestServer(create_app(ctx))
    async with srv:
        yield srv


@pytest.fixture
async def signed(server: TestServer, fed: Federation) -> AsyncIterator[SignedSession]:
    spec = fed.members["police"].clients["cli"]
    async with aiohttp.ClientSession() as session:
        yield SignedSession(
            session, key=spec.key, keyid=spec.key_id, destination="police", clock=time.time
        )


def url(server: TestServer, path: str) -> str:
    return str(server.make_url(path))


async def test_appended_entries_reach_the_matcher_and_status(
    server: TestServer, signed: SignedSession, ctx: NodeContext
) -> None:
    body = {
        "submissions": [
            {"id": "a", "signal": {"kind": "md5", "value": "ab" * 16}, "labels": LABELS},
            {
                "id": "b",
                "signal": {"kind": "pdq", "value": "cd" * 32, "quality": 80},
                "labels": LABELS,
            },
        ]
    }
    async with signed.request("POST", url(server, "/v1/submissions"), json=body) as r:
        assert r.status == 201
    async with signed.request("POST", url(server, "/v1/submissions"), json=body) as r:
        assert r.status == 201  # a retry adds nothing new to the index
    matcher = ctx.matcher
    assert isinstance(matcher, FakeMatcher)
    assert [(o, i, e.entry.id) for o, i, e in matcher.items] == [
        ("police.example/hashfed", 0, "a"),
        ("police.example/hashfed", 1, "b"),
    ]
    async with signed.request("GET", url(server, "/v1/status")) as r:
        status = await r.json()
    assert status["index"] == {"pdq": 2, "md5": 0}
    assert status["log"] == {"origin": "police.example/hashfed", "size": 2}
    assert status["ready"] is False


async def test_readyz_follows_the_matcher(server: TestServer, ctx: NodeContext) -> None:
    matcher = ctx.matcher
    assert isinstance(matcher, FakeMatcher)
    async with aiohttp.ClientSession() as s:
        async with s.get(url(server, "/readyz")) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (503, "not_ready")
        matcher.ready = True
        async with s.get(url(server, "/readyz")) as r:
            assert r.status == 200
        async with s.get(url(server, "/healthz")) as r:
            assert r.status == 200
        async with s.get(url(server, "/metrics")) as r:
            text = await r.text()
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "hashfed_ready 1" in text
    assert 'hashfed_http_requests_total{route="/readyz",method="GET",status="503"} 1' in text
    assert 'hashfed_index_size{kind="md5"} 0' in text


async def test_request_id_is_echoed_or_made(server: TestServer) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(url(server, "/healthz"), headers={"X-Request-Id": "abc-123"}) as r:
            assert r.headers["X-Request-Id"] == "abc-123"
        async with s.get(url(server, "/healthz"), headers={"X-Request-Id": "bad id\t"}) as r:
            made = r.headers["X-Request-Id"]
        assert made != "bad id\t"
        assert len(made) == 32


async def test_writes_and_status_are_never_public(server: TestServer) -> None:
    async with aiohttp.ClientSession() as s:
        for method, path in (
            ("POST", "/v1/submissions"),
            ("POST", "/v1/retractions"),
            ("POST", "/v1/opinions"),
            ("GET", "/v1/status"),
            ("POST", "/v1/log/checkpoint"),
        ):
            async with s.request(method, url(server, path), json={}) as r:
                code = (await r.json())["error"]["code"]
                expected = (
                    (405, "method_not_allowed")
                    if path.startswith("/v1/log/")
                    else (
                        401,
                        "signature_missing",
                    )
                )
                assert (r.status, code) == expected, path


async def test_public_routes_are_reads_only(server: TestServer) -> None:
    for method, path, public in (
        ("GET", "/healthz", True),
        ("GET", "/v1/log/entries", True),
        ("GET", "/v1/logs/police/checkpoint", True),
        ("GET", "/v1/manifest", True),
        ("GET", "/v1/status", False),
        ("POST", "/v1/submissions", False),
    ):
        request = make_mocked_request(method, path, app=server.app)
        request._match_info = await server.app.router.resolve(request)  # noqa: SLF001
        assert is_public(request) is public, (method, path)


async def test_opinions_do_not_need_the_submitter_role(
    server: TestServer, signed: SignedSession
) -> None:
    body = {
        "submissions": [
            {"id": "s", "signal": {"kind": "md5", "value": "ef" * 16}, "labels": LABELS}
        ]
    }
    async with signed.request("POST", url(server, "/v1/submissions"), json=body) as r:
        receipt = (await r.json())["receipts"][0]
    target = {"origin": "police", "index": receipt["index"], "leaf_hash": receipt["leaf_hash"]}
    wrong = {
        "opinions": [
            {"id": "o", "target": {**target, "leaf_hash": "0" * 64}, "verdict": "false_positive"}
        ]
    }
    async with signed.request("POST", url(server, "/v1/opinions"), json=wrong) as r:
        err = (await r.json())["error"]
        assert (r.status, err["code"], err["field"]) == (
            409,
            "target_mismatch",
            "opinions.0.target.leaf_hash",
        )
    other = {
        "retractions": [{"id": "r", "target": {**target, "origin": "platform"}, "reason": "error"}]
    }
    async with signed.request("POST", url(server, "/v1/retractions"), json=other) as r:
        err = (await r.json())["error"]
        assert (r.status, err["code"], err["field"]) == (
            400,
            "invalid_input",
            "retractions.0.target",
        )


async def test_node_refuses_a_log_key_that_is_not_in_the_manifest(fed: Federation) -> None:
    spec = fed.members["police"]
    save_private_key(
        spec.config.parent / "keys" / "log.key",
        SigningKey.generate(spec.log_origin),
        overwrite=True,
    )
    with pytest.raises(ConfigError) as err:
        await open_context(load_config(spec.config, env={}))
    assert (err.value.code, err.value.field) == ("log_key_mismatch", "keys.log_key")


async def test_node_refuses_a_member_not_in_the_manifest(fed: Federation) -> None:
    spec = fed.members["police"]
    spec.config.write_text(
        spec.config.read_text().replace('member_id = "police"', 'member_id = "ghost"')
    )
    with pytest.raises(ConfigError) as err:
        await open_context(load_config(spec.config, env={}))
    assert err.value.field == "node.member_id"
