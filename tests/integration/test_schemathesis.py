"""spec/openapi.yaml against a real ``hashfed serve`` node: no input may produce a 5xx.

schemathesis generates requests for every operation from the spec — valid ones and invalid
ones (wrong types, out-of-range integers, missing and unknown fields, odd path segments) —
and sends them over loopback HTTP to a real node (SQLite, and PostgreSQL where a server
answers).  Requests to signed routes are signed with an RFC 9421 signature of the exact bytes
``requests`` puts on the wire (a ``requests`` auth hook, so schemathesis' re-sends are signed
afresh), which gets them past authentication into the handlers; the same operations are also
tried unsigned and must answer 401 with the JSON error body.  Every answer must be a non-5xx
status the spec declares, of the declared content type, matching the declared schema; invalid
data must be refused; a refused write must leave the log unchanged.

The run is bounded and deterministic (``derandomize``) so it is the same run every time.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from yarl import URL

from federation.client.signer import signature_headers
from federation.core.keys import SigningKey
from tests import dbs
from tests.integration.harness import Node, make_federation

SPEC = Path(__file__).resolve().parents[2] / "spec" / "openapi.yaml"
MEMBER = "police"
# a deeper hunt: HASHFED_SCHEMATHESIS_EXAMPLES=500 (the suite's run stays small and fixed)
EXAMPLES = int(os.environ.get("HASHFED_SCHEMATHESIS_EXAMPLES", "15"))
LOG_SIZE = 20

CONFIG = schemathesis.Config.from_dict(
    {
        # The Signature header is the auth hook's business; generated values for it would only
        # exercise the 401 path (the unsigned test below does that on purpose).
        "generation": {"with-security-parameters": False},
        # An invalid body may be refused for its size before it is parsed: 413 is a rejection.
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [400, 401, 403, 404, 405, 409, 413, 415, 422]
            }
        },
    }
)
schema = schemathesis.openapi.from_path(SPEC, config=CONFIG)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def _signed_operations() -> frozenset[tuple[str, str]]:
    """(METHOD, path) of every operation whose spec entry requires the signature."""
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    return frozenset(
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and op.get("security")
    )


SIGNED = _signed_operations()
signed_schema = schema.include(
    lambda ctx: (ctx.operation.method.upper(), ctx.operation.path) in SIGNED
)


class RequestSignature(requests.auth.AuthBase):
    """Signs each prepared request (method, encoded target, destination, body bytes)."""

    def __init__(self, key: SigningKey, keyid: str) -> None:
        self.key = key
        self.keyid = keyid

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body
        if isinstance(body, str):
            body = body.encode()
            r.body = body  # sign and send the same bytes
        assert body is None or isinstance(body, bytes), type(body)
        if body is None and r.method in ("POST", "PUT", "PATCH"):
            body = r.body = b""
        assert r.method is not None
        assert r.url is not None
        r.headers.update(
            signature_headers(
                self.key,
                keyid=self.keyid,
                method=r.method,
                url=URL(r.url, encoded=True),
                destination=MEMBER,
                body=body,
                now=time.time(),
            )
        )
        return r


@contextmanager
def _running_node(backend: str, root: Path) -> Iterator[Node]:
    urls: dict[str, str] = {}
    if backend == "postgresql":
        reason = dbs.postgres_unavailable_reason()
        if reason:
            pytest.skip(reason)
        urls[MEMBER] = asyncio.run(dbs.create_pg_database())
    fed = make_federation(root, database_urls=urls, max_batch=50)
    running = Node(fed.members[MEMBER]).start()
    try:
        _populate(running)
        yield running
    finally:
        running.stop()
        if urls:
            asyncio.run(dbs.drop_pg_database(urls[MEMBER]))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    """One node per backend: PostgreSQL refuses values SQLite stores (NUL in text, big ids)."""
    with _running_node(request.param, tmp_path_factory.mktemp("fed")) as running:
        yield running


@pytest.fixture(scope="module")
def sqlite_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """The 401 path never reaches storage, so one backend is enough for it."""
    with _running_node("sqlite", tmp_path_factory.mktemp("fed")) as running:
        yield running


def _populate(node: Node) -> None:
    """A log with entries, so small generated indices and sizes get real proofs, not 400s."""
    cli = node.spec.clients["cli"]
    labels = {"categories": ["csam"], "severity": "high", "confirmed_by": "police"}
    items: list[dict[str, Any]] = [
        {"id": f"seed-{n}", "signal": {"kind": "md5", "value": f"{n:032x}"}, "labels": labels}
        for n in range(LOG_SIZE)
    ]
    response = requests.post(
        f"{node.url}/v1/submissions",
        json={"submissions": items},
        auth=RequestSignature(cli.key, cli.key_id),
        timeout=30,
    )
    assert response.status_code == 201, response.text


@pytest.fixture(scope="module")
def auth(node: Node) -> RequestSignature:
    spec = node.spec.clients["cli"]
    return RequestSignature(spec.key, spec.key_id)


def log_size(node: Node) -> int:
    response = requests.get(f"{node.url}/v1/log/checkpoint", timeout=10)
    assert response.status_code == 200
    return int(response.text.split("\n")[1])


def _aim_at_a_held_log(case: schemathesis.Case[Any]) -> None:
    """Point about half of the valid ``{member}`` values at the member the node holds.

    Generated member ids are valid but unknown (404 ``unknown_log`` only); the rest of the
    handler runs only for a held log.  Odd-length values are replaced, so the choice is
    deterministic and invalid (negative) values stay as generated.
    """
    meta = case.meta
    member = (case.path_parameters or {}).get("member")
    if (
        isinstance(member, str)
        and meta is not None
        and not meta.generation.mode.is_negative
        and len(member) % 2 == 1
    ):
        case.path_parameters = {**(case.path_parameters or {}), "member": MEMBER}


def _is_write(case: schemathesis.Case[Any]) -> bool:
    return case.method.upper() == "POST" and case.path in (
        "/v1/submissions",
        "/v1/retractions",
        "/v1/opinions",
    )


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_signed_requests_never_get_a_server_error(
    case: schemathesis.Case[Any], node: Node, auth: RequestSignature
) -> None:
    _aim_at_a_held_log(case)
    write = _is_write(case)
    before = log_size(node) if write else 0
    response = case.call(base_url=node.url, auth=auth, allow_redirects=False)
    case.validate_response(
        response, checks=CHECKS, transport_kwargs={"base_url": node.url, "auth": auth}
    )
    if write and response.status_code >= 400:
        assert log_size(node) == before, "a refused write changed the log"
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str)
        assert error["code"]
        # a valid signature always gets past authentication, into the handler
        assert response.status_code != 401, response.text


@pytest.mark.slow
@schema.include(
    lambda ctx: (ctx.operation.method.upper(), ctx.operation.path) in SIGNED
).parametrize()
@settings(
    max_examples=3,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_unsigned_requests_to_signed_routes_get_401(
    case: schemathesis.Case[Any], sqlite_node: Node
) -> None:
    write = _is_write(case)
    before = log_size(sqlite_node) if write else 0
    response = case.call(base_url=sqlite_node.url, allow_redirects=False)
    case.validate_response(response, checks=[not_a_server_error, content_type_conformance])
    code = response.json()["error"]["code"]
    if case.method.upper() != case.operation.method.upper():
        # schemathesis also tries methods the route lacks: 405 before authentication
        assert (response.status_code, code) == (405, "method_not_allowed"), response.text
    elif response.status_code == 413:
        # aiohttp refuses an oversized body before any middleware runs; nothing is revealed
        assert code == "body_too_large"
    else:
        assert (response.status_code, code) == (401, "signature_missing"), response.text
    if write:
        assert log_size(sqlite_node) == before
