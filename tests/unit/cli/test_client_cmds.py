"""The client commands' pieces without a node: finding the node and key (flags, environment,
node.toml from ``hashfed init``), mapping the node's errors to exit codes, building
submissions from arguments and CSV, parsing match queries and targets, status formatting,
and that loading a client command does not import the heavy libraries."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.cli.main import exit_code_for, main
from federation.cli.match_cmd import merge_matches, parse_query
from federation.cli.nodeclient import node_error, resolve_target, url_from_listen
from federation.cli.retract_cmd import target_from_args
from federation.cli.status_cmd import ago, log_rows, peer_rows
from federation.cli.submit_cmd import items_from_csv, labels_of, make_item
from federation.core.keys import SigningKey
from federation.errors import (
    AuthError,
    ConfigError,
    FederationError,
    ForbiddenError,
    InputError,
    PeerError,
)
from federation.keyfile import save_private_key

REPO = Path(__file__).resolve().parents[3]
LABELS = {
    "taxonomy": "hashfed-labels/v1",
    "categories": ["csam"],
    "severity": "high",
    "confirmed_by": "police",
}


def node_args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {
        "config": None,
        "node": None,
        "key": None,
        "key_id": None,
        "member": None,
    }
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.fixture
def initialised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A node.toml and keys as `hashfed init` writes them."""
    config = tmp_path / "node.toml"
    assert (
        main(
            [
                "init",
                "--member-id",
                "police",
                "--role",
                "submitter",
                "--out",
                str(config),
                "--listen",
                "0.0.0.0:9441",
            ]
        )
        == 0
    )
    capsys.readouterr()
    return config


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("127.0.0.1:8441", "http://127.0.0.1:8441"),
        ("0.0.0.0:9", "http://127.0.0.1:9"),
        ("[::]:8441", "http://[::1]:8441"),
        ("[::1]:8441", "http://[::1]:8441"),
        ("node.internal:80", "http://node.internal:80"),
    ],
)
def test_url_from_listen(listen: str, url: str) -> None:
    assert url_from_listen(listen) == url


def test_url_from_listen_port_zero_needs_node() -> None:
    with pytest.raises(ConfigError) as err:
        url_from_listen("127.0.0.1:0")
    assert err.value.code == "node_url_unknown"


def test_target_from_init_config(initialised: Path) -> None:
    target = resolve_target(node_args(config=initialised), env={})
    assert target.url == "http://127.0.0.1:9441"
    assert target.member == "police"
    assert target.key_id == "police-cli"
    assert target.key.name == "police-cli"


def test_flags_beat_environment_beat_config(initialised: Path) -> None:
    env = {"HASHFED_NODE": "http://env.example:1", "HASHFED_MEMBER": "envmember"}
    target = resolve_target(node_args(config=initialised), env=env)
    assert target.url == "http://env.example:1"
    assert target.member == "envmember"
    target = resolve_target(node_args(config=initialised, node="http://flag.example:2/"), env=env)
    assert target.url == "http://flag.example:2"


def test_default_config_is_node_toml_in_cwd(
    initialised: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(initialised.parent)
    assert resolve_target(node_args(), env={}).member == "police"


def test_key_not_matching_the_config_is_refused(initialised: Path) -> None:
    key_file = initialised.parent / "keys" / "police-cli.key"
    save_private_key(key_file, SigningKey.generate("police-cli"), overwrite=True)
    with pytest.raises(ConfigError) as err:
        resolve_target(node_args(config=initialised), env={})
    assert err.value.code == "client_key_mismatch"


def test_nothing_given_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        resolve_target(node_args(node="http://x:1"), env={})
    assert err.value.code == "node_unknown"
    assert "--key" in err.value.message
    assert "--node" not in err.value.message.split("(")[0]


def test_explicit_flags_without_config(tmp_path: Path) -> None:
    key_file = tmp_path / "c.key"
    save_private_key(key_file, SigningKey.generate("someone-cli"))
    target = resolve_target(node_args(node="http://n:1", key=key_file, member="m"), env={})
    assert target.key_id == "someone-cli"  # the key's name is its id unless told otherwise


@pytest.mark.parametrize(
    ("status", "kind", "exit_code"),
    [
        (400, InputError, 2),
        (404, InputError, 2),
        (409, InputError, 2),
        (422, InputError, 2),
        (401, AuthError, 1),
        (403, ForbiddenError, 1),
        (503, PeerError, 3),
        (500, FederationError, 1),
    ],
)
def test_node_errors_keep_code_and_field(status: int, kind: type, exit_code: int) -> None:
    body = '{"error": {"code": "some_code", "message": "why", "field": "submissions.0.id"}}'
    error = node_error(status, body)
    assert type(error) is kind
    assert error.code == "some_code"
    assert error.field == "submissions.0.id"
    assert error.message == f"node answered {status}: why"
    assert exit_code_for(error) == exit_code


def test_node_error_without_json_body() -> None:
    error = node_error(502, "<html>Bad Gateway</html>")
    assert isinstance(error, PeerError)
    assert error.code == "http_502"
    assert "Bad Gateway" in error.message


def test_make_item_defaults_and_errors() -> None:
    item = make_item("md5", "AB" * 16, LABELS)
    assert item == {
        "id": f"md5-{'ab' * 16}",
        "signal": {"kind": "md5", "value": "ab" * 16},
        "labels": LABELS,
    }
    with pytest.raises(InputError, match="quality"):
        make_item("pdq", "ab" * 32, LABELS)
    with pytest.raises(InputError) as err:
        make_item("md5", "ab" * 16, LABELS, case_ref="John Smith")
    assert err.value.field == "case_ref"
    with pytest.raises(InputError) as err:
        make_item("md5", "ab" * 16, LABELS, entry_id="has space")
    assert err.value.field == "id"


@settings(max_examples=50)
@given(st.binary(min_size=16, max_size=16), st.booleans())
def test_default_id_is_deterministic_whatever_the_case(raw: bytes, upper: bool) -> None:
    value = raw.hex().upper() if upper else raw.hex()
    assert make_item("md5", value, LABELS)["id"] == f"md5-{raw.hex()}"


def test_labels_errors_name_the_option() -> None:
    assert labels_of(["csam"], "high", "police") == LABELS
    with pytest.raises(InputError, match="--label"):
        labels_of([], "high", "police")
    with pytest.raises(InputError) as err:
        labels_of(["cats"], "high", "police")
    assert err.value.field is not None
    assert err.value.field.startswith("labels.categories")
    with pytest.raises(InputError, match="--severity"):
        labels_of(["csam"], None, "police")


def csv_args() -> argparse.Namespace:
    return argparse.Namespace(label=["csam"], severity="high", confirmed_by="police", case_ref=None)


def test_csv_rows(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text(
        f"value,kind,quality,labels,id\n{'ab' * 32},pdq,88,ncii;csam,my-id\n{'cd' * 16},md5,,,\n"
    )
    first, second = items_from_csv(path, csv_args())
    assert first["id"] == "my-id"
    assert first["signal"]["quality"] == 88
    assert first["labels"]["categories"] == ["csam", "ncii"]
    assert second["labels"] == LABELS


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("value\nab\n", "header"),
        ("kind,value,colour\nmd5,ab,red\n", "header"),
        ("kind,value\n", "no rows"),
        (f"kind,value\nmd5,{'ab' * 16}\nmd5,xyz\n", "in.csv:3"),
        (f"kind,value,quality\npdq,{'ab' * 32},high\n", "not a number"),
    ],
)
def test_csv_errors_name_the_row(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "in.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=needle):
        items_from_csv(path, csv_args())


def test_parse_query_kinds(tmp_path: Path) -> None:
    assert parse_query("AB" * 32).signals == ({"kind": "pdq", "value": "ab" * 32},)
    assert parse_query("ab" * 16).signals == ({"kind": "md5", "value": "ab" * 16},)
    assert parse_query("sha256:" + "ab" * 32).signals[0]["kind"] == "sha256"
    with pytest.raises(InputError, match="neither a file"):
        parse_query("ab" * 20)
    with pytest.raises(InputError, match="md5 hash must be 32"):
        parse_query("md5:" + "ab" * 32)
    from federation.demo.images import demo_images

    image = tmp_path / "x.png"
    image.write_bytes(demo_images(3).unrelated)
    assert [s["kind"] for s in parse_query(str(image)).signals] == ["pdq", "md5", "sha256"]


def test_merge_matches_keeps_each_entry_once_closest_first() -> None:
    def m(origin: str, index: int, distance: int) -> dict[str, object]:
        return {"origin": origin, "index": index, "distance": distance}

    merged = merge_matches(
        [
            {"matches": [m("a", 1, 9), m("b", 0, 4)]},
            {"matches": [m("a", 1, 0)]},
        ]
    )
    assert merged == [m("a", 1, 0), m("b", 0, 4)]


def test_target_forms() -> None:
    leaf = "ab" * 32
    assert target_from_args(
        node_args(origin=None, index=None, leaf_hash=None, target=f"police:3:{leaf}", receipt=None)
    ) == {"origin": "police", "index": 3, "leaf_hash": leaf}
    with pytest.raises(InputError, match="once"):
        target_from_args(
            node_args(
                origin="police", index=1, leaf_hash=leaf, target=f"police:3:{leaf}", receipt=None
            )
        )
    with pytest.raises(InputError, match="all of"):
        target_from_args(
            node_args(origin="police", index=None, leaf_hash=None, target=None, receipt=None)
        )
    with pytest.raises(InputError, match="target"):
        target_from_args(
            node_args(origin=None, index=None, leaf_hash=None, target="police:x:y", receipt=None)
        )


def test_status_rows() -> None:
    status = {
        "member": "a",
        "logs": [
            {"member": "a", "origin": "a/o", "size": 3, "frozen": False},
            {"member": "b", "origin": "b/o", "size": 2, "frozen": True, "frozen_reason": "fork"},
        ],
        "peers": [{"member": "b", "failures": 2, "last_error": "stored"}],
        "sync": {
            "enabled": True,
            "origins": {"b": {"last_success": 990, "last_source": "c"}},
            "peers": {"b": {"failures": 3, "backoff_until": 1030, "last_error": "timeout"}},
        },
    }
    assert log_rows(status, 1000.0) == [
        ("a", "a/o", 3, "own", "-", "-", "-", "-"),
        ("b", "b/o", 2, "mirror", "fork", "10s ago", "c", "-"),
    ]
    assert peer_rows(status, 1000.0) == [("b", 3, "30s", "-", "timeout")]
    assert ago(None, 5.0) == "-"
    assert ago(1000 - 600, 1000.0) == "10m ago"


@pytest.mark.parametrize("command", ["submit", "match", "retract", "opinion", "status", "demo"])
def test_client_commands_load_without_heavy_imports(command: str) -> None:
    probe = (
        "import sys;"
        "from federation.cli.main import build_parser;"
        f"build_parser([{command!r}]);"
        "print(sorted(m for m in ('aiohttp', 'numpy', 'sqlalchemy', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "[]"
