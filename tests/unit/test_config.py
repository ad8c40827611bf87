"""Node config: the shipped example loads, paths resolve, env overrides, errors name the key."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from federation.config import load_config, split_listen
from federation.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
KEY = base64.b64encode(bytes(range(32))).decode()
MINIMAL = f"""
[node]
member_id = "police"
[database]
url = "sqlite:///db/node.db"
[keys]
log_key = "keys/log.key"
transport_key = "/abs/transport.key"
transport_key_id = "police-t1"
[manifest]
path = "manifest.json"
[[clients]]
key_id = "police-cli"
public_key = "{KEY}"
roles = ["submit"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "node.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_the_deploy_example_loads_with_the_real_loader() -> None:
    config = load_config(REPO / "deploy" / "node.example.toml", env={})
    assert config.node.member_id == "police"
    assert (config.node.host, config.node.port) == ("127.0.0.1", 8441)
    assert config.keys.log_key == REPO / "deploy" / "keys" / "police.log.key"
    assert config.database.url == f"sqlite:///{REPO / 'deploy' / 'data' / 'node.db'}"
    assert {c.key_id for c in config.clients} == {"police-cli", "police-upload"}
    assert config.limits.max_batch == 1000


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), env={})
    base = tmp_path / "conf"
    assert config.keys.log_key == base / "keys" / "log.key"
    assert config.keys.transport_key == Path("/abs/transport.key")
    assert config.manifest.path == base / "manifest.json"
    assert config.database.url == f"sqlite:///{base / 'db' / 'node.db'}"
    assert config.limits.max_body_bytes == 4 * 1024 * 1024


def test_environment_overrides_secrets_and_paths(tmp_path: Path) -> None:
    env = {
        "HASHFED_DATABASE_URL": "postgresql://hf@db.internal/hashfed",
        "HASHFED_LOG_KEY": "/run/secrets/log.key",
        "HASHFED_LISTEN": "[::1]:9000",
        "HASHFED_UNRELATED": "x",
    }
    config = load_config(write(tmp_path, MINIMAL), env=env)
    assert config.database.url == "postgresql://hf@db.internal/hashfed"
    assert config.keys.log_key == Path("/run/secrets/log.key")
    assert (config.node.host, config.node.port) == ("::1", 9000)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("[limits]", "[limits]\nmax_batch = 0"), "limits.max_batch"),
        (('member_id = "police"', 'member_id = "Police!"'), "node.member_id"),
        (('member_id = "police"', 'member_id = "police"\nlisten = "nowhere"'), "node.listen"),
        (('member_id = "police"', 'member_id = "police"\ncolour = "red"'), "node.colour"),
        ((f'"{KEY}"', '"c2hvcnQ="'), "clients.0.public_key"),
        (('roles = ["submit"]', 'roles = ["root"]'), "clients.0.roles.0"),
        (('[manifest]\npath = "manifest.json"', ""), "manifest"),
    ],
)
def test_errors_name_the_toml_key(tmp_path: Path, change: tuple[str, str], field: str) -> None:
    text = MINIMAL + "[limits]\n"
    old, new = change
    assert old in text
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text.replace(old, new, 1)), env={})
    assert err.value.field == field
    assert field in err.value.message


def test_duplicate_client_key_ids_are_refused(tmp_path: Path) -> None:
    dup = MINIMAL + f'[[clients]]\nkey_id = "police-cli"\npublic_key = "{KEY}"\nroles = ["match"]\n'
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, dup), env={})
    assert err.value.field == "clients"


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        load_config(tmp_path / "absent.toml", env={})
    assert missing.value.code == "config_unreadable"
    with pytest.raises(ConfigError) as bad:
        load_config(write(tmp_path, "[node\n"), env={})
    assert bad.value.code == "invalid_toml"


@pytest.mark.parametrize("value", ["8441", "::1:80", "host:99999", "host:", ":80", "h:8x"])
def test_listen_must_be_host_and_port(value: str) -> None:
    with pytest.raises(ValueError):
        split_listen(value)
