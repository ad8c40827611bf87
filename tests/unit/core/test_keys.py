"""Keys: C2SP vkey/skey forms, Go vectors, key IDs, domain separation, 0600 key files."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.core.keys import (
    DOMAIN_ENTRY,
    DOMAIN_MANIFEST,
    KeyType,
    PublicKey,
    SigningKey,
    key_id,
)
from federation.errors import ConfigError, InputError, VerificationError
from federation.keyfile import load_private_key, save_private_key

SHARED = Path(__file__).resolve().parents[3].parent / "shared"
NOTE_VECTORS = SHARED / "vectors" / "signed-note-vectors.json"
SEED = hashlib.sha256(b"test_keys seed").digest()
KEY = SigningKey.from_seed("keys.example/log", SEED)


@pytest.fixture(scope="module")
def go() -> dict[str, Any]:
    if not NOTE_VECTORS.exists():
        pytest.skip(f"shared vectors not found at {NOTE_VECTORS} (../shared is absent)")
    data: dict[str, Any] = json.loads(NOTE_VECTORS.read_text(encoding="utf-8"))["go_sumdb_note"]
    return data


def test_go_skey_gives_go_vkey(go: dict[str, Any]) -> None:
    skey = SigningKey.parse(go["skey"])
    assert skey.name == "PeterNeumann"
    assert skey.key_type == KeyType.ED25519
    assert skey.public.vkey() == go["vkey"]
    assert skey.skey() == go["skey"]
    for vkey in (go["vkey"], go["other_vkey"]):
        assert PublicKey.parse(vkey).vkey() == vkey


def test_go_bad_vkeys_rejected(go: dict[str, Any]) -> None:
    for bad in go["bad_vkeys"]:
        with pytest.raises(InputError):
            PublicKey.parse(bad)


def test_c2sp_example_key_id() -> None:
    # c2sp.org/signed-note example vkey; its key ID is SHA-256(name || 0x0A || 0x01 || pub)[:4].
    vkey = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
    key = PublicKey.parse(vkey)
    blob = base64.b64decode(vkey.split("+")[2])
    expected = hashlib.sha256(b"example.com/foo\n" + blob).digest()[:4]
    assert key.key_id == expected == bytes.fromhex("530d903a")


def test_key_id_depends_on_type_and_name() -> None:
    raw = KEY.public.raw
    ids = {
        key_id("a", KeyType.ED25519, raw),
        key_id("a", KeyType.COSIGNATURE_V1, raw),
        key_id("b", KeyType.ED25519, raw),
    }
    assert len(ids) == 3
    assert KEY.with_type(KeyType.COSIGNATURE_V1).public.key_id == key_id(
        KEY.name, KeyType.COSIGNATURE_V1, raw
    )
    assert KEY.public.with_type(KeyType.COSIGNATURE_V1).vkey().split("+")[2].startswith("B")


def _swap_id(text: str, index: int) -> str:
    parts = text.split("+")
    parts[index] = f"{(int(parts[index], 16) ^ 1):08x}"
    return "+".join(parts)


def test_key_id_mismatch_rejected() -> None:
    with pytest.raises(InputError, match="does not match"):
        PublicKey.parse(_swap_id(KEY.public.vkey(), 1))
    with pytest.raises(InputError, match="does not match"):
        SigningKey.parse(_swap_id(KEY.skey(), 3))
    # Same key material under another name: the ID no longer matches either.
    vkey = KEY.public.vkey()
    with pytest.raises(InputError, match="does not match"):
        PublicKey.parse("other" + vkey[vkey.index("+") :])


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "name",
        "name+0011aabb",
        "+0011aabb+AQ==",
        "name+0011AABB+" + base64.b64encode(b"\x01" + bytes(32)).decode(),  # upper-case hex
        "name+0011aab+" + base64.b64encode(b"\x01" + bytes(32)).decode(),
        "name+0011aabb+" + base64.b64encode(b"\x02" + bytes(32)).decode(),  # unknown type
        "name+0011aabb+" + base64.b64encode(b"\x01" + bytes(31)).decode(),
        "name+0011aabb+not*base64",
        "na me+0011aabb+" + base64.b64encode(b"\x01" + bytes(32)).decode(),
    ],
)
def test_malformed_vkeys_rejected(vkey: str) -> None:
    with pytest.raises(InputError):
        PublicKey.parse(vkey)


@pytest.mark.parametrize(
    "skey",
    [
        "",
        "PRIVATE+KEY+name+00000000",
        "PUBLIC+KEY+name+00000000+" + base64.b64encode(b"\x01" + bytes(32)).decode(),
        "PRIVATE+KEY+name+00000000+" + base64.b64encode(b"\x01" + bytes(31)).decode(),
    ],
)
def test_malformed_skeys_rejected(skey: str) -> None:
    with pytest.raises(InputError):
        SigningKey.parse(skey)


_NAME = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E).filter(lambda c: c != "+"),
    min_size=1,
    max_size=30,
)
_TYPE = st.sampled_from(list(KeyType))


@settings(max_examples=60, deadline=None)
@given(name=_NAME, seed=st.binary(min_size=32, max_size=32), key_type=_TYPE)
def test_vkey_and_skey_roundtrip(name: str, seed: bytes, key_type: KeyType) -> None:
    key = SigningKey.from_seed(name, seed, key_type)
    public = PublicKey.parse(key.public.vkey())
    assert public == key.public
    assert public.vkey() == key.public.vkey()
    again = SigningKey.parse(key.skey())
    assert again == key
    assert again.skey() == key.skey()
    assert again.public.key_id == key_id(name, key_type, public.raw)


def test_sign_verify_and_domain_separation() -> None:
    payload = b'{"signal":"x"}'
    sig = KEY.sign_domain(DOMAIN_ENTRY, payload)
    KEY.public.verify_domain(DOMAIN_ENTRY, payload, sig)
    KEY.public.verify(DOMAIN_ENTRY + payload, sig)
    with pytest.raises(VerificationError) as info:
        KEY.public.verify_domain(DOMAIN_MANIFEST, payload, sig)
    assert info.value.code == "bad_signature"
    with pytest.raises(VerificationError):
        KEY.public.verify(payload, sig)
    with pytest.raises(VerificationError):
        KEY.public.verify_domain(DOMAIN_ENTRY, payload, sig[:-1])
    other = SigningKey.from_seed(KEY.name, hashlib.sha256(b"other").digest())
    with pytest.raises(VerificationError):
        other.public.verify_domain(DOMAIN_ENTRY, payload, sig)


def test_repr_shows_no_key_material() -> None:
    text = repr(KEY) + str(KEY) + repr([KEY]) + f"{KEY}"
    b64 = base64.b64encode(bytes([KEY.key_type]) + SEED).decode()
    for secret in (SEED.hex(), repr(SEED), b64, KEY.skey()):
        assert secret not in text
    assert KEY.name in text


def test_generate_makes_distinct_keys() -> None:
    a, b = SigningKey.generate("gen.example"), SigningKey.generate("gen.example")
    assert a.public.raw != b.public.raw
    a.public.verify(b"m", a.sign(b"m"))


def test_bad_seed_and_name_rejected() -> None:
    with pytest.raises(InputError):
        SigningKey.from_seed("n", bytes(31))
    for name in ("", "a b", "a+b", "tab\there"):
        with pytest.raises(InputError):
            SigningKey.from_seed(name, SEED)


def test_key_file_written_0600_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "log.key"
    save_private_key(path, KEY)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_private_key(path) == KEY
    assert path.read_text() == KEY.skey() + "\n"


def test_key_file_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    save_private_key(path, KEY)
    other = SigningKey.from_seed(KEY.name, hashlib.sha256(b"other").digest())
    with pytest.raises(ConfigError):
        save_private_key(path, other)
    assert load_private_key(path) == KEY
    save_private_key(path, other, overwrite=True)
    assert load_private_key(path) == other
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_overwrite_tightens_loose_mode(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    path.write_text("junk\n")
    os.chmod(path, 0o644)
    save_private_key(path, KEY, overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_load_refuses_readable_key_file(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "log.key"
    save_private_key(path, KEY)
    os.chmod(path, mode)
    with pytest.raises(ConfigError) as info:
        load_private_key(path)
    assert info.value.code == "insecure_key_file"


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_private_key(tmp_path / "absent.key")
