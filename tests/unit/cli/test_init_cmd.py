"""``hashfed init``: a config the real loader accepts, keys made once, nothing half-written."""

from __future__ import annotations

import stat
from pathlib import Path

from federation.config import load_config
from federation.core.keys import KeyType, PublicKey, SigningKey
from federation.keyfile import load_private_key, save_private_key
from tests.unit.cli.clirun import fails, ok, ok_json


def test_submitter_config_loads_and_keys_match(tmp_path: Path) -> None:
    info = ok_json(
        "init", "--member-id", "police.example", "--role", "submitter", "--json", cwd=tmp_path
    )
    config = load_config(tmp_path / "node.toml", env={})
    assert config.node.member_id == "police.example"
    assert config.node.listen == "127.0.0.1:8441"
    assert config.database.url == f"sqlite:///{tmp_path / 'hashfed.db'}"
    assert config.manifest.path == tmp_path / "manifest.json"
    assert config.keys.transport_key_id == "police.example-t1"
    log_key = load_private_key(config.keys.log_key)
    assert stat.S_IMODE(config.keys.log_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.keys.transport_key.stat().st_mode) == 0o600
    assert (log_key.name, log_key.key_type) == ("police.example/hashfed", KeyType.ED25519)
    send = info["send_to_stewards"]
    assert send["log_vkey"] == log_key.public.vkey()
    assert PublicKey.parse(send["log_vkey"]).name == send["log_origin"]
    transport = load_private_key(config.keys.transport_key)
    key_id, b64 = send["transport_key"].split("=", 1)
    assert key_id == "police.example-t1"
    assert (
        PublicKey.from_raw(key_id, KeyType.ED25519, transport.public.raw).raw
        == transport.public.raw
    )
    (client,) = config.clients
    assert "submit" in client.roles
    assert client.raw_public_key() == load_private_key(Path(info["key_files"]["client"])).public.raw
    assert "witness_vkey" not in send
    assert len(info["created"]) == 6  # three keys, each .key and .pub
    assert "PRIVATE" not in (tmp_path / "node.toml").read_text()


def test_witness_with_options_and_key_reuse(tmp_path: Path) -> None:
    args = [
        "init",
        "--member-id",
        "audit.example",
        "--role",
        "witness",
        "--out",
        "etc/node.toml",
        "--keys-dir",
        "secrets",
        "--listen",
        "0.0.0.0:9000",
        "--database",
        "postgresql://hashfed@db/hashfed",
    ]
    text = ok(*args, cwd=tmp_path).stdout
    config = load_config(tmp_path / "etc" / "node.toml", env={})
    assert config.node.port == 9000
    assert config.database.url == "postgresql://hashfed@db/hashfed"
    assert config.keys.log_key == tmp_path / "secrets" / "audit.example_hashfed.key"
    assert config.clients[0].roles == ("admin",)
    witness = load_private_key(tmp_path / "secrets" / "audit.example_witness.key")
    assert witness.key_type == KeyType.COSIGNATURE_V1
    assert witness.public.vkey() in text
    assert "hashfed manifest add-member" in text
    # --force rewrites the config but keeps the existing keys
    before = load_private_key(config.keys.log_key).public.vkey()
    info = ok_json(*args, "--force", "--json", cwd=tmp_path)
    assert info["created"] == []
    assert info["send_to_stewards"]["log_vkey"] == before
    assert info["send_to_stewards"]["witness_vkey"] == witness.public.vkey()


def test_refusals_leave_nothing_behind(tmp_path: Path) -> None:
    line = fails(2, "init", "--member-id", "Not Valid", "--role", "consumer", cwd=tmp_path)
    assert "[invalid_member_id]" in line
    line = fails(
        2,
        "init",
        "--member-id",
        "a.example",
        "--role",
        "consumer",
        "--listen",
        "nope",
        cwd=tmp_path,
    )
    assert "[invalid_config]" in line
    assert "node.listen" in line
    assert not list(tmp_path.iterdir())
    fails(2, "init", "--member-id", "a.example", "--role", "steward", cwd=tmp_path)
    (tmp_path / "node.toml").write_text("# mine\n")
    assert "[file_exists]" in fails(
        2, "init", "--member-id", "a.example", "--role", "consumer", cwd=tmp_path
    )
    assert (tmp_path / "node.toml").read_text() == "# mine\n"
    assert not (tmp_path / "keys").exists()


def test_existing_key_with_another_name_is_refused(tmp_path: Path) -> None:
    save_private_key(tmp_path / "keys" / "a.example_hashfed.key", SigningKey.generate("other"))
    line = fails(2, "init", "--member-id", "a.example", "--role", "consumer", cwd=tmp_path)
    assert "[key_mismatch]" in line
    assert not (tmp_path / "node.toml").exists()
