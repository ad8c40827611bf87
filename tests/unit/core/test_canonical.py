"""canonical.py: RFC 8785 output cross-checked against the ``rfc8785`` package; strict parsing."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.core.canonical import (
    MAX_SAFE_INTEGER,
    _reference_canonical_json,
    canonical_json,
    parse_json,
)
from federation.errors import InputError

safe_ints = st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
# Default text excludes surrogates; include the awkward ranges on purpose: controls, DEL,
# non-BMP characters (UTF-16 key order differs from code point order there).
texts = st.text(
    st.one_of(
        st.characters(max_codepoint=0x7F),
        st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF),
        st.characters(min_codepoint=0x10000),
        st.characters(exclude_categories=("Cs",)),
    ),
    max_size=12,
)
json_values = st.recursive(
    st.none() | st.booleans() | safe_ints | texts,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(texts, children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_matches_rfc8785_package(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_fast_path_equals_reference_emitter(value: Any) -> None:
    """canonical_json takes the stdlib encoder for plain values; it must not change a byte."""
    assert canonical_json(value) == _reference_canonical_json(value)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_parse_round_trip(value: Any) -> None:
    encoded = canonical_json(value)
    assert parse_json(encoded) == value
    assert canonical_json(parse_json(encoded)) == encoded


def test_known_answers() -> None:
    # RFC 8785 §3.2.3: keys sort by UTF-16 code units, so U+1F600 (D83D DE00) sorts before
    # U+FB33 although its code point is larger.
    value = {"\ufb33": 1, "\U0001f600": 2, "\u20ac": 3, "\r": 4, "1": 5, "\u0080": 6, "\u00f6": 7}
    assert list(json.loads(canonical_json(value))) == [
        "\r",
        "1",
        "\u0080",
        "\u00f6",
        "\u20ac",
        "\U0001f600",
        "\ufb33",
    ]
    assert canonical_json({"b": [1, True, None], "a": 'x\n"\\\x01\x7f/é'}) == (
        b'{"a":"x\\n\\"\\\\\\u0001\x7f/\xc3\xa9","b":[1,true,null]}'
    )
    assert canonical_json((1, 2)) == b"[1,2]"
    assert canonical_json(-MAX_SAFE_INTEGER) == b"-9007199254740991"


@pytest.mark.parametrize(
    "value",
    [
        [1, 2, 2**53],
        {"a": {"b": "\ud83d"}},
        1.0,
        float("nan"),
        float("inf"),
        {"a": [0.5]},
        MAX_SAFE_INTEGER + 1,
        -MAX_SAFE_INTEGER - 1,
        2**64,
        "\ud800",
        {"k": "a\udfffb"},
        {"\ud800": 1},
        {1: "x"},
        b"bytes",
        {1, 2},
        object(),
    ],
)
def test_rejects_values_without_canonical_form(value: Any) -> None:
    with pytest.raises(InputError) as info:
        canonical_json(value)
    assert info.value.code == "non_canonical_json"


def test_error_names_the_path() -> None:
    with pytest.raises(InputError) as info:
        canonical_json({"a": [{"b": 1.5}]})
    assert info.value.field == "a.0.b"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"1.0", "non_canonical_json"),
        (b'{"a": 1e3}', "non_canonical_json"),
        (b"[NaN]", "non_canonical_json"),
        (b"Infinity", "non_canonical_json"),
        (b"-Infinity", "non_canonical_json"),
        (b'{"a": 1, "a": 2}', "invalid_json"),
        (b'{"a": {"b": 1, "b": 1}}', "invalid_json"),
        (b"\xff", "invalid_json"),
        (b'{"a": 1', "invalid_json"),
        (b"", "invalid_json"),
        (b"[1] [2]", "invalid_json"),
    ],
)
def test_parse_rejects(data: bytes, code: str) -> None:
    with pytest.raises(InputError) as info:
        parse_json(data)
    assert info.value.code == code


def test_parse_accepts_any_whitespace_and_order() -> None:
    assert parse_json(b' { "b" : [ 1 , 2 ] , "a" : null } ') == {"b": [1, 2], "a": None}
