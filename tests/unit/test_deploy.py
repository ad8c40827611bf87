"""deploy/ cannot drift from the code: every example config loads with the real loader, and
every command the Dockerfile, compose file and systemd unit run parses with the real CLI."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from federation.cli.main import build_parser
from federation.config import load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE_CONFIGS = sorted((DEPLOY / "compose").glob("*.toml"))


def parse_cli(argv: list[str]) -> Any:
    """Parse ``hashfed ARGV`` as main() would; SystemExit (usage error) fails the test."""
    return build_parser(argv).parse_args(argv)


def dockerfile_instruction(name: str) -> str:
    """The (last) instruction ``name`` of the final stage, continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    final = text.split("\nFROM ")[-1]
    lines = [line for line in final.splitlines() if line.startswith(name + " ")]
    assert lines, f"Dockerfile has no {name}"
    return lines[-1].removeprefix(name + " ").strip()


def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(
    "path", [DEPLOY / "node.example.toml", *COMPOSE_CONFIGS], ids=lambda p: p.name
)
def test_example_configs_load(path: Path) -> None:
    config = load_config(path, env={})
    assert config.node.member_id
    assert config.clients, "the example shows the member's CLI client"


def test_compose_has_three_configs_with_distinct_members() -> None:
    members = {load_config(p, env={}).node.member_id for p in COMPOSE_CONFIGS}
    assert len(COMPOSE_CONFIGS) == 3
    assert len(members) == 3


def test_dockerfile_runs_hashfed_serve_as_non_root_with_healthcheck() -> None:
    entrypoint = json.loads(dockerfile_instruction("ENTRYPOINT"))
    cmd = json.loads(dockerfile_instruction("CMD"))
    assert entrypoint[0] == "hashfed"
    args = parse_cli([*entrypoint[1:], *cmd])
    assert args.command == "serve"
    assert str(args.config) == "/etc/hashfed/node.toml"
    assert dockerfile_instruction("USER").split(":")[0] not in ("root", "0")
    assert "/healthz" in dockerfile_instruction("HEALTHCHECK")
    port = dockerfile_instruction("EXPOSE")
    assert f":{port}/healthz" in dockerfile_instruction("HEALTHCHECK")
    assert f"HASHFED_LISTEN=0.0.0.0:{port}" in (DEPLOY / "Dockerfile").read_text()
    assert (DEPLOY / "Dockerfile").read_text().startswith("#")
    assert "FROM python:3.11-slim" in (DEPLOY / "Dockerfile").read_text()


def test_compose_services_run_valid_commands_on_postgres() -> None:
    data = compose()
    services = data["services"]
    assert "postgres" in services
    nodes = {name: s for name, s in services.items() if s.get("image", "").startswith("hashfed")}
    assert len(nodes) == 3
    entrypoint = json.loads(dockerfile_instruction("ENTRYPOINT"))
    databases = set(
        re.findall(r"CREATE DATABASE (\w+)", (DEPLOY / "compose/initdb.sql").read_text())
    )
    for name, service in nodes.items():
        args = parse_cli([*entrypoint[1:], *service["command"]])
        assert args.command == "serve"
        url = service["environment"]["HASHFED_DATABASE_URL"]
        assert url.startswith("postgresql://")
        assert url.rsplit("/", 1)[1] in databases
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        config = DEPLOY / mounts[str(args.config)]
        assert config.is_file(), config
        assert load_config(config, env={}).node.member_id == name
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_systemd_unit_runs_a_valid_command_as_a_dedicated_user() -> None:
    unit = (DEPLOY / "hashfed.service").read_text()
    settings: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    (exec_start,) = settings["ExecStart"]
    argv = shlex.split(exec_start)
    assert Path(argv[0]).name == "hashfed"
    assert parse_cli(argv[1:]).command == "serve"
    assert settings["User"] == ["hashfed"]
    for hardening in ("NoNewPrivileges", "ProtectSystem", "PrivateTmp", "ProtectHome"):
        assert settings[hardening][0] in ("yes", "strict"), hardening
    assert settings["Restart"] == ["on-failure"]


def test_reverse_proxy_points_at_the_example_listen_address() -> None:
    caddy = (DEPLOY / "caddy" / "Caddyfile").read_text()
    listen = load_config(DEPLOY / "node.example.toml", env={}).node.listen
    assert f"reverse_proxy {listen}" in caddy
    assert "health_uri /healthz" in caddy


def test_readme_names_every_file() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.name != "README.md" and path.parent.name != "compose":
            assert path.name in readme, path
