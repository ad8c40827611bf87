"""Client signing: headers, third-party verifier interop, real HTTP through the middleware."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler
from cryptography.hazmat.primitives.asymmetric import ed25519
from http_message_signatures import (
    HTTPMessageVerifier,
    InvalidSignature,
    MappingKeyResolver,
    algorithms,
)
from yarl import URL

from federation.client.signer import SignedSession, new_nonce, signature_headers
from federation.core.httpsig import (
    component_values,
    parse_signature,
    parse_signature_input,
    signature_base,
)
from federation.core.keys import SigningKey
from federation.errors import FederationError, InputError
from federation.server.auth import (
    PRINCIPAL_KEY,
    ChainResolver,
    ClientKey,
    ClientKeyRegistry,
    NonceCache,
    PeerKey,
    PeerKeyRegistry,
    auth_middleware,
    require_role,
)

NOW = 1_700_000_000
DEST = "member-b"
SUBMITTER = SigningKey.from_seed("submitter", hashlib.sha256(b"submitter").digest())
MATCHER = SigningKey.from_seed("matcher", hashlib.sha256(b"matcher").digest())
SUSPENDED = SigningKey.from_seed("suspended", hashlib.sha256(b"suspended").digest())
COMPONENTS = ("@method", "@path", "@query", "content-digest", "hashfed-destination")


def test_signature_headers_sign_the_encoded_target() -> None:
    headers = signature_headers(
        SUBMITTER,
        keyid="s",
        method="get",
        url="https://n.example/a b?q=x y",
        destination=DEST,
        body=None,
        now=NOW + 0.9,
        nonce="0123456789abcdef",
    )
    # yarl encodes exactly what aiohttp will put on the request line; that is what is signed
    target = URL("https://n.example/a b?q=x y").raw_path_qs
    assert target == "/a%20b?q=x+y"
    lowered = {k.lower(): v for k, v in headers.items()}
    params = parse_signature_input(headers["Signature-Input"])["hashfed"]
    base = signature_base(params, component_values("GET", target, lowered))
    SUBMITTER.public.verify(base, parse_signature(headers["Signature"])["hashfed"])
    assert (
        'created=1700000000;expires=1700000300;nonce="0123456789abcdef"'
        in headers["Signature-Input"]
    )
    assert headers["Hashfed-Destination"] == DEST
    assert "Content-Digest" not in headers


def test_signature_headers_refuse_relative_urls() -> None:
    with pytest.raises(InputError):
        signature_headers(
            SUBMITTER, keyid="s", method="GET", url="/v1/x", destination=DEST, body=None, now=NOW
        )


def test_new_nonce_is_long_and_fresh() -> None:
    nonces = {new_nonce() for _ in range(100)}
    assert len(nonces) == 100
    assert all(len(n) >= 16 for n in nonces)


@dataclass
class _Message:
    method: str
    url: str
    headers: dict[str, str]


@pytest.mark.parametrize("body", [b'{"hash":"abc"}', None])
def test_http_message_signatures_package_verifies_our_request(body: bytes | None) -> None:
    url = "https://node-b.example/v1/items/a%2Fb?kind=pdq&q=a%20b"
    assert str(URL(url)) == url  # already in the form aiohttp sends, so both sides see one URL
    # the package checks created/expires against the real clock, so sign with it
    headers = signature_headers(
        SUBMITTER,
        keyid="submitter",
        method="POST",
        url=url,
        destination=DEST,
        body=body,
        now=time.time(),
    )
    public = ed25519.Ed25519PublicKey.from_public_bytes(SUBMITTER.public.raw)
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={"submitter": public}, private_keys={}),
    )
    required = COMPONENTS if body else tuple(c for c in COMPONENTS if c != "content-digest")
    results = verifier.verify(
        _Message("POST", url, headers),
        expect_tag="hashfed",
        require_components=required,
        body=body or b"",
    )
    assert [r.parameters["keyid"] for r in results] == ["submitter"]
    with pytest.raises(InvalidSignature):
        verifier.verify(
            _Message("POST", url.replace("a%2Fb", "a/b"), headers), expect_tag="hashfed"
        )


# --- end to end over loopback HTTP -----------------------------------------------------------


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except FederationError as exc:
        return web.json_response(exc.to_json(), status=exc.status)


async def _echo(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL_KEY]
    require_role(principal, "submit")
    return web.json_response({"keyid": principal.keyid, "body": await request.json()})


async def _item(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL_KEY]
    return web.json_response(
        {"keyid": principal.keyid, "name": request.match_info["name"], "q": request.query_string}
    )


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    resolver = ChainResolver(
        ClientKeyRegistry(
            DEST,
            [
                ClientKey("submitter", SUBMITTER.public, frozenset({"submit", "match"})),
                ClientKey("matcher", MATCHER.public, frozenset({"match"})),
            ],
        ),
        PeerKeyRegistry(
            [PeerKey("suspended", SUSPENDED.public, "member-s", 0, None, suspended=True)]
        ),
    )
    app = web.Application(
        middlewares=[
            _errors,
            auth_middleware(
                resolver=resolver,
                nonces=NonceCache(),
                destination=DEST,
                clock=lambda: NOW,
                is_public=lambda request: request.path == "/healthz",
            ),
        ]
    )
    app.router.add_post("/v1/echo", _echo)
    app.router.add_get("/v1/items/{name}", _item)
    app.router.add_get("/healthz", _healthz)
    async with TestServer(app) as test_server:
        yield test_server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
        yield client


def _signed(
    session: aiohttp.ClientSession,
    key: SigningKey = SUBMITTER,
    *,
    destination: str = DEST,
    clock_offset: int = 0,
    nonce: str | None = None,
) -> SignedSession:
    return SignedSession(
        session,
        key=key,
        keyid=key.name,
        destination=destination,
        clock=lambda: NOW + clock_offset,
        nonce_factory=(lambda: nonce) if nonce else new_nonce,
    )


async def _error_code(response: aiohttp.ClientResponse) -> tuple[int, str]:
    payload = await response.json()
    return response.status, payload["error"]["code"]


async def test_signed_post_reaches_the_handler(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    async with _signed(session).request(
        "POST", server.make_url("/v1/echo"), json={"pdq": "ab" * 32}
    ) as resp:
        assert resp.status == 200
        assert await resp.json() == {"keyid": "submitter", "body": {"pdq": "ab" * 32}}


async def test_raw_path_and_query_survive_the_round_trip(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    url = URL(str(server.make_url("/v1/items/a%2Fb")) + "?q=x%20y&z=%7E", encoded=True)
    async with _signed(session, MATCHER).request("GET", url) as resp:
        assert resp.status == 200
        assert await resp.json() == {"keyid": "matcher", "name": "a/b", "q": "q=x y&z=~"}


async def test_unsigned_request_is_refused(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    async with session.post(server.make_url("/v1/echo"), json={}) as resp:
        assert await _error_code(resp) == (401, "signature_missing")


async def test_public_route_needs_no_signature(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    async with session.get(server.make_url("/healthz")) as resp:
        assert resp.status == 200


async def test_replayed_request_is_refused(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    signed = _signed(session, nonce="fixed-nonce-0000000001")
    async with signed.request("POST", server.make_url("/v1/echo"), json=[1]) as resp:
        assert resp.status == 200
    async with signed.request("POST", server.make_url("/v1/echo"), json=[1]) as resp:
        assert await _error_code(resp) == (401, "replayed_nonce")


async def test_other_destination_is_refused(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    async with _signed(session, destination="member-c").request(
        "GET", server.make_url("/v1/items/x")
    ) as resp:
        assert await _error_code(resp) == (401, "wrong_destination")


async def test_client_clock_ahead_is_refused(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    async with _signed(session, clock_offset=61).request(
        "GET", server.make_url("/v1/items/x")
    ) as resp:
        assert await _error_code(resp) == (401, "signature_from_future")


async def test_missing_role_is_forbidden(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    async with _signed(session, MATCHER).request(
        "POST", server.make_url("/v1/echo"), json={}
    ) as resp:
        assert await _error_code(resp) == (403, "missing_role")


async def test_suspended_member_is_forbidden(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    async with _signed(session, SUSPENDED).request("GET", server.make_url("/v1/items/x")) as resp:
        assert await _error_code(resp) == (403, "member_suspended")


async def test_body_and_json_are_exclusive(session: aiohttp.ClientSession) -> None:
    with pytest.raises(InputError):
        async with _signed(session).request("POST", "https://n.example/x", body=b"a", json={}):
            pass
