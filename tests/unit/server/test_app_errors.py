"""The error middleware is the only place exceptions become HTTP: every branch, no leaks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import BaseModel, ValidationError

from federation.core.signals import Signal
from federation.errors import AuthError, ConflictError, StorageError
from federation.server.errors import error_middleware, validation_field
from federation.server.metrics import Metrics, metrics_middleware


class Item(BaseModel):
    signal: Signal
    count: int


async def _raise(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    if kind == "conflict":
        raise ConflictError("id reused", code="id_conflict", field="items.0.id")
    if kind == "auth":
        raise AuthError("bad", code="bad_signature")
    if kind == "storage":
        raise StorageError("db gone", code="database_unavailable")
    if kind == "validation":
        Item.model_validate({"signal": {"kind": "md5", "value": "zz"}, "count": 1})
    if kind == "crash":
        raise RuntimeError("secret /etc/hashfed/key.pem")
    return web.json_response({"ok": True})


@pytest.fixture
async def served() -> AsyncIterator[tuple[TestServer, Metrics]]:
    metrics = Metrics()
    app = web.Application(
        middlewares=[metrics_middleware(metrics), error_middleware(metrics.auth_failure)]
    )
    app.router.add_get("/raise/{kind}", _raise)
    server = TestServer(app)
    async with server:
        yield server, metrics


@pytest.mark.parametrize(
    ("kind", "status", "code", "field"),
    [
        ("conflict", 409, "id_conflict", "items.0.id"),
        ("auth", 401, "bad_signature", None),
        ("storage", 503, "database_unavailable", None),
        ("validation", 400, "invalid_input", "signal.value"),
        ("crash", 500, "internal_error", None),
    ],
)
async def test_errors_map_to_status_code_and_field(
    served: tuple[TestServer, Metrics], kind: str, status: int, code: str, field: str | None
) -> None:
    server, _ = served
    async with aiohttp.ClientSession() as s, s.get(str(server.make_url(f"/raise/{kind}"))) as r:
        body = await r.json()
    assert (r.status, body["error"]["code"], body["error"].get("field")) == (status, code, field)
    assert "secret" not in body["error"]["message"]


async def test_unknown_route_and_method_are_json(served: tuple[TestServer, Metrics]) -> None:
    server, metrics = served
    async with aiohttp.ClientSession() as s:
        async with s.get(str(server.make_url("/nowhere"))) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (404, "not_found")
        async with s.post(str(server.make_url("/raise/x"))) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (405, "method_not_allowed")
            assert "GET" in r.headers["Allow"]
        async with s.get(str(server.make_url("/raise/auth"))) as r:
            assert r.status == 401
    assert metrics.auth_failures["bad_signature"] == 1
    assert metrics.requests[("unmatched", "GET", "404")] == 1
    assert metrics.requests[("/raise/{kind}", "GET", "401")] == 1


def test_validation_field_drops_union_tags_only() -> None:
    with pytest.raises(ValidationError) as err:
        Item.model_validate(
            {"signal": {"kind": "pdq", "value": "0" * 64, "quality": "x"}, "count": 1}
        )
    assert validation_field(err.value, "submissions.3") == "submissions.3.signal.quality"
    with pytest.raises(ValidationError) as err2:
        Item.model_validate({"signal": {"kind": "md5", "value": "0" * 32}, "count": "many"})
    assert validation_field(err2.value) == "count"


def test_metrics_render_is_prometheus_text() -> None:
    metrics = Metrics()
    metrics.observe_request("/v1/x", "GET", 200, 0.02)
    metrics.observe_request("/v1/x", "GET", 200, 7.0)
    metrics.auth_failure('we"ird')
    text = metrics.render({"hashfed_log_size": ("Sizes.", {(("origin", "a/b"),): 3.0})})
    lines = text.splitlines()
    assert 'hashfed_http_requests_total{route="/v1/x",method="GET",status="200"} 2' in lines
    assert 'hashfed_http_request_duration_seconds_bucket{route="/v1/x",le="0.025"} 1' in lines
    assert 'hashfed_http_request_duration_seconds_bucket{route="/v1/x",le="5"} 1' in lines
    assert 'hashfed_http_request_duration_seconds_bucket{route="/v1/x",le="+Inf"} 2' in lines
    assert 'hashfed_http_request_duration_seconds_count{route="/v1/x"} 2' in lines
    assert 'hashfed_auth_failures_total{code="we\\"ird"} 1' in lines
    assert 'hashfed_log_size{origin="a/b"} 3' in lines
    assert "# TYPE hashfed_log_size gauge" in lines
    assert text.endswith("\n")
