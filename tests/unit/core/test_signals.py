"""signals.py: hex normalisation, Hamming distance, and the strict signal models."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from federation.core.signals import (
    Md5Signal,
    PdqSignal,
    Sha256Signal,
    Signal,
    SignalKind,
    hamming,
    normalise_hex,
)
from federation.errors import InputError

signal_adapter: TypeAdapter[PdqSignal | Md5Signal | Sha256Signal] = TypeAdapter(Signal)


@pytest.mark.parametrize(("kind", "length"), [("pdq", 64), ("md5", 32), ("sha256", 64)])
def test_normalise_hex_accepts_and_lowercases(kind: str, length: int) -> None:
    assert normalise_hex(kind, "AbCdEf01" * (length // 8)) == "abcdef01" * (length // 8)


@pytest.mark.parametrize(
    ("kind", "value", "code", "words"),
    [
        ("pdq", "0" * 63, "invalid_hash", "64 hex characters, got 63"),
        ("md5", "0" * 33, "invalid_hash", "32 hex characters, got 33"),
        ("sha256", "g" * 64, "invalid_hash", "only hex"),
        ("sha256", " " + "0" * 63, "invalid_hash", "only hex"),
        ("sha1", "0" * 40, "invalid_signal_kind", "unknown signal kind"),
        ("md5", 5, "invalid_hash", "must be a string"),
    ],
)
def test_normalise_hex_rejects(kind: str, value: Any, code: str, words: str) -> None:
    with pytest.raises(InputError) as info:
        normalise_hex(kind, value)
    assert info.value.code == code
    assert words in info.value.message


def test_hamming_known_values() -> None:
    zero = "0" * 64
    assert hamming(zero, zero) == 0
    assert hamming(zero, "f" * 64) == 256
    assert hamming(zero, "0" * 63 + "1") == 1
    assert hamming(bytes(32), "8" + "0" * 63) == 1
    with pytest.raises(InputError):
        hamming("00", "0000")


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_hamming_is_a_metric_over_bits(a: bytes, b: bytes) -> None:
    expected = sum(bin(x ^ y).count("1") for x, y in zip(a, b, strict=True))
    assert hamming(a, b) == hamming(a.hex(), b.hex()) == hamming(b, a) == expected


def test_models_normalise_and_discriminate() -> None:
    pdq = signal_adapter.validate_python({"kind": "pdq", "value": "AB" * 32, "quality": 50})
    assert isinstance(pdq, PdqSignal)
    assert pdq.value == "ab" * 32
    md5 = signal_adapter.validate_python({"kind": "md5", "value": "0" * 32})
    assert isinstance(md5, Md5Signal)
    sha = signal_adapter.validate_json(b'{"kind":"sha256","value":"' + b"1" * 64 + b'"}')
    assert isinstance(sha, Sha256Signal)
    assert {k.value for k in SignalKind} == {"pdq", "md5", "sha256"}


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        ({"kind": "pdq", "value": "0" * 64, "quality": 101}, ("pdq", "quality")),
        ({"kind": "pdq", "value": "0" * 64, "quality": -1}, ("pdq", "quality")),
        ({"kind": "pdq", "value": "0" * 64, "quality": True}, ("pdq", "quality")),
        ({"kind": "pdq", "value": "0" * 64, "quality": "60"}, ("pdq", "quality")),
        ({"kind": "pdq", "value": "0" * 64}, ("pdq", "quality")),
        ({"kind": "pdq", "value": "0" * 32, "quality": 60}, ("pdq", "value")),
        ({"kind": "md5", "value": "0" * 64}, ("md5", "value")),
        ({"kind": "sha256", "value": "0" * 64, "quality": 1}, ("sha256", "quality")),
        ({"kind": "sha1", "value": "0" * 40}, ()),
    ],
)
def test_bad_signal_names_the_field(data: dict[str, Any], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as info:
        signal_adapter.validate_python(data)
    assert info.value.errors()[0]["loc"] == loc


def test_models_are_frozen() -> None:
    md5 = Md5Signal(value="0" * 32)
    with pytest.raises(ValidationError):
        md5.value = "1" * 32  # type: ignore[misc]
