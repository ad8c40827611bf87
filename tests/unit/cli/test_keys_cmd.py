"""``hashfed keys``: files, modes, public forms, and that a private key is never printed."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

from federation.core.keys import KeyType, PublicKey, SigningKey
from federation.keyfile import load_private_key, save_private_key
from tests.unit.cli.clirun import fails, ok, ok_json


def test_generate_note_key_named_after_log_origin(tmp_path: Path) -> None:
    out = ok("keys", "generate", "police.example/hashfed", "--out", "keys", cwd=tmp_path)
    key_file = tmp_path / "keys" / "police.example_hashfed.key"
    pub_file = tmp_path / "keys" / "police.example_hashfed.pub"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = load_private_key(key_file)
    assert key.key_type == KeyType.ED25519
    vkey = pub_file.read_text().strip()
    assert vkey == key.public.vkey()
    assert out.stdout.splitlines()[-1] == vkey
    assert PublicKey.parse(vkey).name == "police.example/hashfed"
    assert "PRIVATE" not in out.stdout + out.stderr
    assert key.skey().split("+", 4)[4] not in out.stdout + out.stderr


def test_generate_cosignature_json(tmp_path: Path) -> None:
    info = ok_json("keys", "generate", "w1", "--type", "cosignature", "--json", cwd=tmp_path)
    key = load_private_key(tmp_path / info["private_key_file"])
    assert key.key_type == KeyType.COSIGNATURE_V1
    assert info["vkey"] == key.public.vkey()
    assert info["key_id"] == key.public.key_id.hex()
    assert (info["name"], info["type"]) == ("w1", "cosignature")
    assert info["public_key"] == base64.b64encode(key.public.raw).decode()
    assert stat.S_IMODE((tmp_path / "w1.key").stat().st_mode) == 0o600


def test_transport_key_generate_and_show(tmp_path: Path) -> None:
    info = ok_json("keys", "generate", "police-t1", "--type", "transport", "--json", cwd=tmp_path)
    key = load_private_key(tmp_path / "police-t1.key")
    raw = base64.b64encode(key.public.raw).decode()
    assert (info["public_key"], info["key_id"], info["type"]) == (raw, "police-t1", "transport")
    assert "vkey" not in info
    assert (tmp_path / "police-t1.pub").read_text() == f"police-t1={raw}\n"
    shown = ok_json("keys", "show", "police-t1.pub", "--json", cwd=tmp_path)
    assert (shown["type"], shown["key_id"], shown["public_key"]) == ("transport", "police-t1", raw)
    text = ok("keys", "generate", "police-t2", "--type", "transport", cwd=tmp_path).stdout
    raw2 = base64.b64encode(load_private_key(tmp_path / "police-t2.key").public.raw).decode()
    assert text.splitlines()[-1] == raw2
    assert f"police-t2={raw2}" in text


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    save_private_key(tmp_path / "log.key", SigningKey.generate("log"))
    before = (tmp_path / "log.key").read_text()
    line = fails(2, "keys", "generate", "log", cwd=tmp_path)
    assert "refusing to overwrite" in line
    assert (tmp_path / "log.key").read_text() == before
    assert not (tmp_path / "log.pub").exists()
    ok("keys", "generate", "log", "--force", cwd=tmp_path)
    assert (tmp_path / "log.key").read_text() != before
    assert stat.S_IMODE((tmp_path / "log.key").stat().st_mode) == 0o600


def test_unsafe_names_stay_in_the_directory(tmp_path: Path) -> None:
    info = ok_json("keys", "generate", "../up/../x", "--out", "k", "--json", cwd=tmp_path)
    assert Path(info["private_key_file"]).parent == Path("k")
    assert load_private_key(tmp_path / info["private_key_file"]).name == "../up/../x"
    assert not (tmp_path / "up").exists()


def test_bad_names_are_usage_errors(tmp_path: Path) -> None:
    line = fails(2, "keys", "generate", "a/b", "--type", "transport", cwd=tmp_path)
    assert "[invalid_key_name]" in line
    assert not list(tmp_path.iterdir())


def test_show_never_prints_the_private_key(tmp_path: Path) -> None:
    key = SigningKey.generate("nca.example/hf")
    save_private_key(tmp_path / "nca.key", key)
    (tmp_path / "nca.pub").write_text(key.public.vkey() + "\n")
    shown = ok_json("keys", "show", "nca.key", "--json", cwd=tmp_path)
    assert (shown["vkey"], shown["type"]) == (key.public.vkey(), "ed25519")
    text = ok("keys", "show", "nca.key", cwd=tmp_path).stdout
    assert key.public.vkey() in text
    assert key.skey().split("+", 4)[4] not in text
    assert "PRIVATE" not in text
    pub = ok_json("keys", "show", "nca.pub", "--json", cwd=tmp_path)
    assert (pub["vkey"], pub["type"], pub["key_id"]) == (
        key.public.vkey(),
        "note",
        key.public.key_id.hex(),
    )


def test_show_refuses_readable_private_key(tmp_path: Path) -> None:
    save_private_key(tmp_path / "log.key", SigningKey.generate("log"))
    (tmp_path / "log.key").chmod(0o644)
    assert "[insecure_key_file]" in fails(2, "keys", "show", "log.key", cwd=tmp_path)


def test_show_bad_files_and_usage(tmp_path: Path) -> None:
    (tmp_path / "junk.pub").write_text("not a key\n")
    assert "[invalid_key]" in fails(2, "keys", "show", "junk.pub", cwd=tmp_path)
    fails(2, "keys", "generate", cwd=tmp_path)  # argparse usage error
