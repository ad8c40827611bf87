"""RFC 9421 signature base, RFC 8941 fields, RFC 9530 digests and the hashfed time window."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.core.httpsig import (
    BASE_COMPONENTS,
    BODY_COMPONENTS,
    MAX_AGE,
    SignatureParams,
    check_window,
    component_values,
    content_digest,
    create_signature_headers,
    parse_signature,
    parse_signature_input,
    signature_base,
    split_target,
    verify_content_digest,
)
from federation.core.keys import SigningKey
from federation.core.structured import (
    BareItem,
    Token,
    parse_dictionary,
    serialize_item,
    serialize_params,
)
from federation.errors import AuthError, InputError, VerificationError

NOW = 1_700_000_000
KEY = SigningKey.from_seed("node-a", hashlib.sha256(b"httpsig-kat").digest())
NONCE = "n0nce-0123456789abcdef"


def _params(created: int = NOW, expires: int = NOW + 300) -> SignatureParams:
    return SignatureParams.create(
        BODY_COMPONENTS, created=created, expires=expires, nonce=NONCE, keyid="k1"
    )


# --- RFC 8941 subset -------------------------------------------------------------------------

_keys = st.from_regex(r"[a-z*][a-z0-9_\-.*]{0,8}", fullmatch=True)
_items: st.SearchStrategy[BareItem] = st.one_of(
    st.integers(-(10**15) + 1, 10**15 - 1),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
    st.binary(max_size=40),
    st.booleans(),
    st.from_regex(r"[A-Za-z*][A-Za-z0-9:/.*+\-]{0,10}", fullmatch=True).map(Token),
)
_param_lists = st.dictionaries(_keys, _items, max_size=3).map(lambda d: tuple(d.items()))


def _serialize_dictionary(
    members: dict[str, tuple[object, tuple[tuple[str, BareItem], ...]]],
) -> str:
    parts = []
    for name, (value, params) in members.items():
        if isinstance(value, tuple):
            inner = " ".join(serialize_item(v) + serialize_params(p) for v, p in value)
            parts.append(f"{name}=({inner}){serialize_params(params)}")
        elif value is True:
            parts.append(name + serialize_params(params))
        else:
            assert isinstance(value, int | str | bytes)
            parts.append(f"{name}={serialize_item(value)}{serialize_params(params)}")
    return ", ".join(parts)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        _keys,
        st.tuples(
            st.one_of(_items, st.lists(st.tuples(_items, _param_lists), max_size=4).map(tuple)),
            _param_lists,
        ),
        max_size=4,
    )
)
def test_dictionary_round_trip(
    members: dict[str, tuple[object, tuple[tuple[str, BareItem], ...]]],
) -> None:
    parsed = parse_dictionary(_serialize_dictionary(members))
    assert parsed == members
    for name, (value, _params) in parsed.items():
        original = members[name][0]
        assert type(value) is type(original)


@pytest.mark.parametrize(
    "text",
    [
        "a=1, a=2",  # duplicate key: refused, never last-one-wins
        "a=1,",  # trailing comma
        "a=1.5",  # decimals are not supported
        "a=1234567890123456",  # more than 15 digits
        'a="x\\n"',  # only \" and \\ escapes
        'a="unterminated',
        "a=:not base64!:",
        "a=?2",
        "a=(1 2",  # unterminated inner list
        "a=(1;x;x)",  # duplicate parameter
        "A=1",  # keys are lowercase
        "a=1 b=2",
    ],
)
def test_dictionary_rejects_malformed(text: str) -> None:
    with pytest.raises(InputError) as info:
        parse_dictionary(text)
    assert info.value.code == "malformed_sf"


def test_string_escapes_round_trip() -> None:
    assert serialize_item('say "hi" \\ there') == '"say \\"hi\\" \\\\ there"'
    assert parse_dictionary('a="say \\"hi\\" \\\\ there"')["a"][0] == 'say "hi" \\ there'


# --- Signature-Input / Signature -------------------------------------------------------------


def test_signature_input_preserves_parameter_order() -> None:
    text = 'sig1=("@method" "@path");keyid="k";created=5;tag="t";nonce="x";alg="ed25519";expires=9'
    params = parse_signature_input(text)["sig1"]
    assert params.components == ("@method", "@path")
    assert [name for name, _ in params.params] == [
        "keyid",
        "created",
        "tag",
        "nonce",
        "alg",
        "expires",
    ]
    assert params.serialize() == text.removeprefix("sig1=")


@pytest.mark.parametrize(
    "text",
    [
        "sig1=:AAAA:",  # not an inner list
        'sig1=(@method);keyid="k"',  # component as a token, not a string
        'sig1=("@method";sf);keyid="k"',  # component parameters are not supported
        'sig1=("@method");created="5"',  # created must be an integer
        'sig1=("@method");keyid=k',  # keyid must be a string
        "sig1=(",  # not a structured field at all
    ],
)
def test_signature_input_rejects_malformed(text: str) -> None:
    with pytest.raises(AuthError) as info:
        parse_signature_input(text)
    assert info.value.code == "signature_malformed"


def test_signature_requires_byte_sequences() -> None:
    assert parse_signature("a=:AAEC:") == {"a": b"\x00\x01\x02"}
    with pytest.raises(AuthError) as info:
        parse_signature('a="AAEC"')
    assert info.value.code == "signature_malformed"


# --- components and the signature base -------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        ("/v1/log", "/v1/log", "?"),
        ("/v1/log?", "/v1/log", "?"),
        ("", "/", "?"),
        ("/a%2Fb/c?x=%20y&z", "/a%2Fb/c", "?x=%20y&z"),
        ("/p?a=1?b=2", "/p", "?a=1?b=2"),
    ],
)
def test_split_target_keeps_raw_encoding(target: str, path: str, query: str) -> None:
    assert split_target(target) == (path, query)


def test_signature_base_known_answer() -> None:
    values = component_values(
        "POST",
        "/v1/submissions?dry=1",
        {"hashfed-destination": "  member-b ", "content-digest": content_digest(b"{}")},
    )
    base = signature_base(_params(), values)
    assert base == (
        b'"@method": POST\n'
        b'"@path": /v1/submissions\n'
        b'"@query": ?dry=1\n'
        b'"content-digest": sha-256=:RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o=:\n'
        b'"hashfed-destination": member-b\n'
        b'"@signature-params": ("@method" "@path" "@query" "content-digest" '
        b'"hashfed-destination");created=1700000000;expires=1700000300;'
        b'nonce="n0nce-0123456789abcdef";keyid="k1";alg="ed25519";tag="hashfed"'
    )


@pytest.mark.parametrize(
    ("components", "values"),
    [
        (("@method", "@method"), {"@method": "GET"}),  # covered twice
        (("@authority",), {"@authority": "x"}),  # not a component hashfed resolves
        (("hashfed-destination",), {}),  # covered but absent
        (("hashfed-destination",), {"hashfed-destination": "a\nb"}),
        (("hashfed-destination",), {"hashfed-destination": "caf\u00e9"}),  # non-ASCII
    ],
)
def test_signature_base_rejects(components: tuple[str, ...], values: dict[str, str]) -> None:
    params = SignatureParams.create(components, created=NOW, expires=NOW, nonce=NONCE, keyid="k")
    with pytest.raises(AuthError) as info:
        signature_base(params, values)
    assert info.value.code == "signature_malformed"


def test_created_headers_verify_and_every_bit_flip_fails() -> None:
    headers = create_signature_headers(
        KEY,
        keyid="k1",
        method="post",
        target="/v1/x?y",
        destination="m",
        body=b"{}",
        created=NOW,
        nonce=NONCE,
    )
    params = parse_signature_input(headers["Signature-Input"])["hashfed"]
    signature = parse_signature(headers["Signature"])["hashfed"]
    lowered = {name.lower(): value for name, value in headers.items()}
    base = signature_base(params, component_values("POST", "/v1/x?y", lowered))
    KEY.public.verify(base, signature)
    for index in range(0, len(base), 7):
        mutated = bytearray(base)
        mutated[index] ^= 0x01
        with pytest.raises(VerificationError):
            KEY.public.verify(bytes(mutated), signature)


def test_created_headers_without_body_cover_no_digest() -> None:
    for body in (None, b""):
        headers = create_signature_headers(
            KEY,
            keyid="k1",
            method="GET",
            target="/",
            destination="m",
            body=body,
            created=NOW,
            nonce=NONCE,
        )
        assert "Content-Digest" not in headers
        assert (
            parse_signature_input(headers["Signature-Input"])["hashfed"].components
            == BASE_COMPONENTS
        )


@pytest.mark.parametrize(("nonce", "lifetime"), [("short", 300), (NONCE, 0), (NONCE, MAX_AGE + 1)])
def test_created_headers_refuse_weak_parameters(nonce: str, lifetime: int) -> None:
    with pytest.raises(InputError):
        create_signature_headers(
            KEY,
            keyid="k1",
            method="GET",
            target="/",
            destination="m",
            body=None,
            created=NOW,
            nonce=nonce,
            lifetime=lifetime,
        )


# --- time window -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("created", "expires", "now", "until"),
    [
        (NOW, NOW + 300, NOW, NOW + 300),
        (NOW + 60, NOW + 120, NOW, NOW + 120),  # exactly the allowed skew
        (NOW - 300, NOW, NOW, NOW),  # exactly max age and exactly expires
        (NOW - 10, NOW + 5, NOW, NOW + 5),
    ],
)
def test_window_accepts_edges(created: int, expires: int, now: int, until: int) -> None:
    assert check_window(_params(created, expires), now) == until


@pytest.mark.parametrize(
    ("created", "expires", "now", "code"),
    [
        (NOW + 61, NOW + 100, NOW, "signature_from_future"),
        (NOW - 301, NOW - 1, NOW, "signature_expired"),
        (NOW - 100, NOW - 1, NOW, "signature_expired"),
        (NOW, NOW + 301, NOW, "signature_malformed"),  # validity longer than max age
        (NOW, NOW - 1, NOW, "signature_malformed"),  # expires before created
    ],
)
def test_window_rejects(created: int, expires: int, now: int, code: str) -> None:
    with pytest.raises(AuthError) as info:
        check_window(_params(created, expires), now)
    assert info.value.code == code


def test_window_requires_created_and_expires() -> None:
    params = SignatureParams(BASE_COMPONENTS, (("created", NOW),))
    with pytest.raises(AuthError) as info:
        check_window(params, NOW)
    assert info.value.code == "signature_malformed"


# --- Content-Digest (RFC 9530) ---------------------------------------------------------------


def test_content_digest_rfc9530_example() -> None:
    # RFC 9530 §2 example: the content {"hello": "world"}
    assert (
        content_digest(b'{"hello": "world"}')
        == "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    )
    verify_content_digest(
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:", b'{"hello": "world"}'
    )


@given(st.binary(max_size=200))
@settings(max_examples=50)
def test_content_digest_round_trip(body: bytes) -> None:
    verify_content_digest(content_digest(body), body)
    with pytest.raises(AuthError) as info:
        verify_content_digest(content_digest(body), body + b"x")
    assert info.value.code == "digest_mismatch"


def test_content_digest_checks_sha512_and_ignores_unknown() -> None:
    body = b"payload"
    sha512 = serialize_item(hashlib.sha512(body).digest())
    verify_content_digest(f"{content_digest(body)}, sha-512={sha512}, md5=:AAAA:", body)
    wrong = serialize_item(hashlib.sha512(b"other").digest())
    with pytest.raises(AuthError) as info:
        verify_content_digest(f"{content_digest(body)}, sha-512={wrong}", body)
    assert info.value.code == "digest_mismatch"


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("sha-512=:" + "A" * 86 + "==:", "digest_missing"),
        ("sha-256=garbage(", "digest_mismatch"),
        ('sha-256="notbytes"', "digest_mismatch"),
    ],
)
def test_content_digest_rejects(header: str, code: str) -> None:
    with pytest.raises(AuthError) as info:
        verify_content_digest(header, b"body")
    assert info.value.code == code
