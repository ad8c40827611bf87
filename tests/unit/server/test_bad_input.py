"""Hostile and malformed bodies get a 4xx JSON error with a stable code — never a 500 — and
nothing is stored.  Regressions found by the schemathesis run and by probing the JSON parser:

- JSON nested deeper than the recursion limit crashed ``json.loads`` (RecursionError -> 500);
- an integer of more than 4300 digits crashed it too (ValueError from ``int()`` -> 500);
- ``null`` for an optional field (``max_distance``, a query's PDQ ``quality``) was taken as
  "absent" although the spec allows only an integer or no field at all.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from federation.client.signer import SignedSession
from federation.config import load_config
from federation.errors import InputError
from federation.matching.service import MatchService
from federation.node import open_context
from federation.server.app import create_app
from federation.server.routes import parse_body
from tests.integration.harness import Federation, make_federation

PDQ = "ab" * 32
JSON_ROUTES = [
    "/v1/submissions",
    "/v1/retractions",
    "/v1/opinions",
    "/v1/match",
    "/v1/local-content",
]
DEEP = b"[" * 5000 + b"]" * 5000
LONG_NUMBER = b'{"submissions": ' + b"9" * 5000 + b"}"


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return make_federation(tmp_path)


@pytest.fixture
async def server(fed: Federation) -> AsyncIterator[TestServer]:
    ctx = await open_context(load_config(fed.members["police"].config, env={}))
    assert isinstance(ctx.matcher, MatchService)
    await ctx.matcher.load(ctx.store)
    srv = TestServer(create_app(ctx))
    try:
        async with srv:
            yield srv
    finally:
        await ctx.store.close()


@pytest.fixture
async def signed(fed: Federation) -> AsyncIterator[SignedSession]:
    spec = fed.members["police"].clients["cli"]
    async with aiohttp.ClientSession() as session:
        yield SignedSession(
            session, key=spec.key, keyid=spec.key_id, destination="police", clock=time.time
        )


async def log_size(server: TestServer) -> int:
    async with (
        aiohttp.ClientSession() as s,
        s.get(str(server.make_url("/v1/log/checkpoint"))) as r,
    ):
        assert r.status == 200
        return int((await r.text()).split("\n")[1])


async def send(
    server: TestServer, signed: SignedSession, path: str, body: bytes
) -> tuple[int, dict[str, str]]:
    async with signed.request(
        "POST",
        str(server.make_url(path)),
        body=body,
        headers={"Content-Type": "application/json"},
    ) as r:
        status = r.status
        error: dict[str, str] = (await r.json())["error"]
    assert set(error) <= {"code", "message", "field"}
    assert error["message"]
    return status, error


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(DEEP, "invalid_json", id="nested-5000-deep"),
        pytest.param(LONG_NUMBER, "invalid_json", id="5000-digit-integer"),
        pytest.param(b'{"a": 1, "a": 2}', "invalid_json", id="duplicate-key"),
        pytest.param(b'{"submissions": 1.0}', "non_canonical_json", id="float"),
        pytest.param(b"\xff\xfe{}", "invalid_json", id="not-utf8"),
    ],
)
@pytest.mark.parametrize("path", JSON_ROUTES)
async def test_hostile_json_is_refused_with_400_and_nothing_stored(
    server: TestServer, signed: SignedSession, path: str, body: bytes, code: str
) -> None:
    before = await log_size(server)
    status, error = await send(server, signed, path, body)
    assert (status, error["code"]) == (400, code)
    assert await log_size(server) == before


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize("body", [b"[]", b'"text"', b"7", b"null", b"true"])
async def test_a_body_that_is_not_an_object_is_invalid_input(
    server: TestServer, signed: SignedSession, path: str, body: bytes
) -> None:
    before = await log_size(server)
    status, error = await send(server, signed, path, body)
    assert (status, error["code"]) == (400, "invalid_input")
    assert await log_size(server) == before


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/v1/match",
            b'{"signals": [{"kind": "pdq", "value": "%s"}], "max_distance": null}',
            "max_distance",
        ),
        (
            "/v1/match",
            b'{"signals": [{"kind": "pdq", "value": "%s", "quality": null}]}',
            "signals.0.quality",
        ),
        (
            "/v1/local-content",
            b'{"items": [{"ref": "r1", "signal": '
            b'{"kind": "pdq", "value": "%s", "quality": null}}]}',
            "items.0.signal.quality",
        ),
    ],
    ids=["match-max-distance", "match-quality", "local-content-quality"],
)
async def test_null_for_an_optional_integer_is_refused(
    server: TestServer, signed: SignedSession, path: str, body: bytes, field: str
) -> None:
    status, error = await send(server, signed, path, body % PDQ.encode())
    assert (status, error["code"], error.get("field")) == (400, "invalid_input", field)
    # the same request without the null field is accepted
    absent = body.replace(b', "max_distance": null', b"").replace(b', "quality": null', b"")
    async with signed.request(
        "POST",
        str(server.make_url(path)),
        body=absent % PDQ.encode(),
        headers={"Content-Type": "application/json"},
    ) as r:
        assert r.status in (200, 201), await r.text()
        if path == "/v1/local-content":
            # nothing was stored by the refused request: the first item stored gets id 1
            assert (await r.json())["items"][0]["id"] == 1


def test_parse_body_turns_parser_crashes_into_invalid_json() -> None:
    for data in (DEEP, LONG_NUMBER):
        with pytest.raises(InputError) as caught:
            parse_body(data)
        assert caught.value.code == "invalid_json"
    assert parse_body(b'{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}


async def test_values_postgresql_cannot_hold_are_refused_on_every_backend(
    server: TestServer, signed: SignedSession
) -> None:
    # NUL in text and ids past 32 bits were 500s on PostgreSQL only (SQLite stored them)
    body = b'{"items": [{"ref": "a\\u0000b", "signal": {"kind": "md5", "value": "%s"}}]}'
    status, error = await send(server, signed, "/v1/local-content", body % (b"0" * 32))
    assert (status, error["code"], error.get("field")) == (400, "invalid_input", "items.0.ref")
    async with signed.request("GET", str(server.make_url("/v1/alerts?after=2147483648"))) as r:
        error = (await r.json())["error"]
        assert (r.status, error["code"], error["field"]) == (400, "invalid_query", "after")
    async with signed.request("GET", str(server.make_url("/v1/alerts?after=2147483647"))) as r:
        assert r.status == 200
        assert (await r.json())["alerts"] == []
