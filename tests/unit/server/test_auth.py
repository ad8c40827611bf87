"""Request verification: every failure code, key registries, replay cache, RFC 9421 interop."""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

from federation.core.httpsig import (
    BODY_COMPONENTS,
    SignatureParams,
    component_values,
    content_digest,
    create_signature_headers,
    serialize_item,
    signature_base,
)
from federation.core.keys import SigningKey
from federation.errors import AuthError, ConfigError, ForbiddenError, StorageError
from federation.server.auth import (
    ERROR_CODES,
    ChainResolver,
    ClientKey,
    ClientKeyRegistry,
    NonceCache,
    PeerKey,
    PeerKeyRegistry,
    Principal,
    RequestView,
    require_role,
    verify_request,
)

NOW = 1_700_000_000
SPEC = Path(__file__).resolve().parents[3] / "spec" / "auth.md"
DEST = "member-b"
SEED = hashlib.sha256(b"client-1").digest()
CLIENT = SigningKey.from_seed("client-1", SEED)
PEER = SigningKey.from_seed("peer-a", hashlib.sha256(b"peer-a").digest())
STRANGER = SigningKey.from_seed("stranger", hashlib.sha256(b"stranger").digest())
BODY = b'{"signal":"pdq"}'

RESOLVER = ChainResolver(
    ClientKeyRegistry(DEST, [ClientKey("client-1", CLIENT.public, frozenset({"submit"}))]),
    PeerKeyRegistry(
        [
            PeerKey(
                "peer-a/1", PEER.public, "member-a", NOW - 1000, NOW + 1000, frozenset({"peer"})
            ),
            PeerKey("peer-s/1", PEER.public, "member-s", NOW - 1000, None, suspended=True),
        ]
    ),
)

_counter = iter(range(10**9))


def _nonce() -> str:
    return f"nonce-{next(_counter):016d}"


def signed(
    method: str = "POST",
    target: str = "/v1/submissions?dry=1",
    body: bytes = BODY,
    *,
    key: SigningKey = CLIENT,
    keyid: str = "client-1",
    created: int = NOW,
) -> RequestView:
    headers = create_signature_headers(
        key,
        keyid=keyid,
        method=method,
        target=target,
        destination=DEST,
        body=body,
        created=created,
        nonce=_nonce(),
    )
    return RequestView(method, target, {k.lower(): v for k, v in headers.items()}, body)


def custom(
    components: tuple[str, ...],
    params: tuple[tuple[str, int | str], ...],
    body: bytes = BODY,
    label: str = "sig1",
) -> RequestView:
    """A request signed (validly, with CLIENT) over any components and parameters."""
    headers = {"hashfed-destination": DEST, "content-digest": content_digest(body)}
    sig_params = SignatureParams(components, params)
    base = signature_base(sig_params, component_values("POST", "/v1/x", headers))
    headers["signature-input"] = f"{label}={sig_params.serialize()}"
    headers["signature"] = f"{label}={serialize_item(CLIENT.sign(base))}"
    return RequestView("POST", "/v1/x", headers, body)


def good_params(**override: int | str) -> tuple[tuple[str, int | str], ...]:
    values: dict[str, int | str] = {
        "created": NOW,
        "expires": NOW + 300,
        "nonce": _nonce(),
        "keyid": "client-1",
        "alg": "ed25519",
        "tag": "hashfed",
    }
    values.update(override)
    return tuple((k, v) for k, v in values.items() if v != "")


def verify(view: RequestView, nonces: NonceCache | None = None, now: int = NOW) -> Principal:
    return verify_request(
        view,
        resolver=RESOLVER,
        nonces=NonceCache() if nonces is None else nonces,
        destination=DEST,
        now=now,
    )


def code_of(view: RequestView, now: int = NOW) -> str:
    with pytest.raises(AuthError) as info:
        verify(view, now=now)
    assert info.value.status == 401
    return info.value.code


def test_accepts_client_request_with_body() -> None:
    principal = verify(signed())
    assert principal.kind == "client"
    assert principal.member_id == DEST
    assert principal.roles == frozenset({"submit"})
    assert principal.public_key == CLIENT.public


def test_accepts_peer_request_without_body() -> None:
    principal = verify(
        signed("GET", "/v1/log/entries?start=0&end=10", b"", key=PEER, keyid="peer-a/1")
    )
    assert (principal.kind, principal.member_id) == ("peer", "member-a")


def test_accepts_custom_order_and_label() -> None:
    params = (
        ("keyid", "client-1"),
        ("tag", "hashfed"),
        ("alg", "ed25519"),
        ("nonce", _nonce()),
        ("expires", NOW + 10),
        ("created", NOW),
    )
    verify(custom(BODY_COMPONENTS[::-1], params, label="anything"))


# --- one assertion per failure code ---------------------------------------------------------


def test_signature_missing() -> None:
    view = signed()
    assert code_of(replace(view, headers={})) == "signature_missing"
    only_input = {k: v for k, v in view.headers.items() if k != "signature"}
    assert code_of(replace(view, headers=only_input)) == "signature_missing"


def test_signature_malformed() -> None:
    view = signed()
    assert (
        code_of(replace(view, headers={**view.headers, "signature": "hashfed=("}))
        == "signature_malformed"
    )
    other_label = {**view.headers, "signature": "other=:AAAA:"}
    assert code_of(replace(view, headers=other_label)) == "signature_malformed"
    assert code_of(custom(BODY_COMPONENTS, good_params(nonce="too-short"))) == "signature_malformed"
    assert code_of(custom(BODY_COMPONENTS, good_params(keyid=""))) == "signature_malformed"
    assert code_of(custom(BODY_COMPONENTS, (*good_params(), ("extra", 1)))) == "signature_malformed"
    assert code_of(custom(BODY_COMPONENTS, good_params(expires=NOW + 301))) == "signature_malformed"
    two = custom(BODY_COMPONENTS, good_params())
    doubled = {
        **two.headers,
        "signature-input": two.headers["signature-input"]
        + ", "
        + two.headers["signature-input"].replace("sig1=", "sig2="),
    }
    assert code_of(replace(two, headers=doubled)) == "signature_malformed"


def test_unknown_key() -> None:
    assert code_of(signed(key=STRANGER, keyid="stranger")) == "unknown_key"
    # a peer key outside its validity window resolves to nothing
    assert (
        code_of(signed(key=PEER, keyid="peer-a/1", created=NOW + 1000), now=NOW + 1000)
        == "unknown_key"
    )


def test_bad_signature() -> None:
    view = signed()
    assert code_of(replace(view, target="/v1/submissions?dry=0")) == "bad_signature"
    assert code_of(replace(view, method="PUT")) == "bad_signature"
    assert code_of(replace(view, target="/v1/other?dry=1")) == "bad_signature"
    assert code_of(signed(key=STRANGER)) == "bad_signature"  # claims client-1's key id


def test_replayed_nonce() -> None:
    nonces = NonceCache()
    view = signed()
    verify(view, nonces)
    with pytest.raises(AuthError) as info:
        verify(view, nonces, now=NOW + 5)
    assert info.value.code == "replayed_nonce"


def test_signature_expired() -> None:
    assert code_of(signed(created=NOW - 301)) == "signature_expired"
    assert (
        code_of(custom(BODY_COMPONENTS, good_params(created=NOW - 100, expires=NOW - 1)))
        == "signature_expired"
    )


def test_signature_from_future() -> None:
    assert code_of(signed(created=NOW + 61)) == "signature_from_future"


def test_wrong_destination() -> None:
    view = signed()
    assert code_of(replace(view, headers={**view.headers, "hashfed-destination": "member-c"})) == (
        "wrong_destination"
    )
    without = {k: v for k, v in view.headers.items() if k != "hashfed-destination"}
    assert code_of(replace(view, headers=without)) == "wrong_destination"


def test_digest_mismatch() -> None:
    assert code_of(replace(signed(), body=b'{"signal":"md5"}')) == "digest_mismatch"


def test_digest_missing() -> None:
    view = signed()
    without = {k: v for k, v in view.headers.items() if k != "content-digest"}
    assert code_of(replace(view, headers=without)) == "digest_missing"
    # a body added to a request that was signed without one
    assert code_of(replace(signed("POST", "/v1/x", b""), body=b"smuggled")) == "digest_missing"


def test_unsupported_algorithm() -> None:
    assert (
        code_of(custom(BODY_COMPONENTS, good_params(alg="rsa-pss-sha512")))
        == "unsupported_algorithm"
    )
    assert code_of(custom(BODY_COMPONENTS, good_params(alg=""))) == "unsupported_algorithm"


def test_components_missing() -> None:
    no_query = tuple(c for c in BODY_COMPONENTS if c != "@query")
    assert code_of(custom(no_query, good_params())) == "components_missing"
    no_digest = tuple(c for c in BODY_COMPONENTS if c != "content-digest")
    assert code_of(custom(no_digest, good_params())) == "components_missing"


def test_tag_mismatch() -> None:
    assert code_of(custom(BODY_COMPONENTS, good_params(tag="other"))) == "tag_mismatch"
    assert code_of(custom(BODY_COMPONENTS, good_params(tag=""))) == "tag_mismatch"


def test_failed_request_does_not_burn_nonce() -> None:
    nonces = NonceCache()
    view = signed()
    with pytest.raises(AuthError):
        verify(replace(view, body=b"tampered"), nonces)
    assert len(nonces) == 0
    verify(view, nonces)


# --- roles and suspension --------------------------------------------------------------------


def test_require_role() -> None:
    principal = verify(signed())
    require_role(principal, "submit")
    with pytest.raises(ForbiddenError) as info:
        require_role(principal, "admin")
    assert (info.value.code, info.value.status) == ("missing_role", 403)


def test_suspended_member_authenticates_but_is_forbidden() -> None:
    principal = verify(signed("GET", "/v1/x", b"", key=PEER, keyid="peer-s/1"))
    assert principal.suspended
    with pytest.raises(ForbiddenError) as info:
        require_role(principal, "peer")
    assert (info.value.code, info.value.status) == ("member_suspended", 403)


def test_registries_reject_duplicate_key_ids() -> None:
    key = ClientKey("c", CLIENT.public, frozenset())
    with pytest.raises(ConfigError):
        ClientKeyRegistry(DEST, [key, key])


def test_peer_key_window_is_half_open() -> None:
    registry = PeerKeyRegistry([PeerKey("p", PEER.public, "m", 100, 200)])
    assert registry.resolve("p", 99) is None
    assert registry.resolve("p", 100) is not None
    assert registry.resolve("p", 199) is not None
    assert registry.resolve("p", 200) is None


# --- replay cache ----------------------------------------------------------------------------


def test_nonce_cache_evicts_only_after_validity() -> None:
    cache = NonceCache()
    cache.remember("k", "n", until=NOW + 300, now=NOW)
    cache.remember("other-key", "n", until=NOW + 300, now=NOW)  # keyed by key id and nonce
    with pytest.raises(AuthError):
        cache.remember("k", "n", until=NOW + 300, now=NOW + 300)  # still valid at the edge
    cache.evict(NOW + 301)
    assert len(cache) == 0
    cache.remember("k", "n", until=NOW + 600, now=NOW + 301)


def test_nonce_cache_is_bounded() -> None:
    cache = NonceCache(max_entries=2)
    cache.remember("k", "a", until=NOW + 10, now=NOW)
    cache.remember("k", "b", until=NOW + 20, now=NOW)
    with pytest.raises(StorageError) as info:
        cache.remember("k", "c", until=NOW + 20, now=NOW)
    assert (info.value.code, info.value.status) == ("replay_cache_full", 503)
    cache.remember("k", "c", until=NOW + 30, now=NOW + 11)  # "a" expired and was evicted
    assert len(cache) == 2


# --- interop: a third-party RFC 9421 implementation signs, we verify ------------------------


@dataclass
class _Message:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


@pytest.mark.parametrize("body", [BODY, None])
def test_http_message_signatures_package_request_is_accepted(body: bytes | None) -> None:
    private = ed25519.Ed25519PrivateKey.from_private_bytes(SEED)
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={"client-1": private}),
    )
    message = _Message(
        "POST", "https://node-b.example/v1/submissions?q=a%20b&x", {"Hashfed-Destination": DEST}
    )
    at = datetime.datetime.fromtimestamp(NOW, tz=datetime.UTC)
    signer.sign(
        message,
        key_id="client-1",
        created=at,
        expires=at + datetime.timedelta(seconds=120),
        nonce="third-party-nonce-0001",
        label="sig1",
        tag="hashfed",
        covered_component_ids=("@method", "@path", "@query", "hashfed-destination"),
        body=body,
    )
    view = RequestView(
        "POST",
        "/v1/submissions?q=a%20b&x",
        {k.lower(): v for k, v in message.headers.items()},
        body or b"",
    )
    assert verify(view).keyid == "client-1"
    assert code_of(replace(view, target="/v1/submissions?q=a+b&x")) == "bad_signature"


def test_error_codes_are_distinct_and_documented() -> None:
    assert len(set(ERROR_CODES)) == len(ERROR_CODES)
    text = SPEC.read_text()
    missing = [code for code in ERROR_CODES if f"`{code}`" not in text]
    assert not missing, f"error codes not documented in {SPEC}: {missing}"
