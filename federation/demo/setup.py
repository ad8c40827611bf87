"""A five-member demo federation written to a directory, and its nodes run as processes.

:func:`write_federation` does, in one call, what the real onboarding spreads over people:
every member generates its keys (log, transport, CLI client; a cosignature key for the
witness), the stewards sign a manifest listing them with loopback endpoints, and every member
writes its ``node.toml``.  :class:`NodeProcess` runs ``hashfed serve`` for one member in its
own process group (so a Ctrl-C aimed at the demo does not kill nodes mid-step; the demo
stops them itself) and stops it with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from federation.core.keys import KeyType, SigningKey
from federation.core.manifest import (
    Manifest,
    Member,
    Policy,
    TransportKey,
    sign_manifest,
    signed_manifest_json,
)
from federation.keyfile import save_private_key

MEMBERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("police", "Police unit (demo)", ("submitter", "consumer")),
    ("hotline", "Hotline (demo)", ("submitter", "consumer")),
    ("platform-a", "Platform A (demo)", ("consumer",)),
    ("platform-b", "Platform B (demo)", ("consumer",)),
    ("auditor", "Auditor and witness (demo)", ("auditor", "witness")),
)
"""(member id, display name, manifest roles) of the demo's members."""

START_TIMEOUT = 60.0


@dataclass(frozen=True)
class DemoMember:
    """One member as written to disk."""

    member_id: str
    name: str
    url: str
    config: Path
    log_key: SigningKey
    client_key: SigningKey
    client_key_path: Path

    @property
    def client_key_id(self) -> str:
        """The CLI client's key id on the member's node (``ID-cli``, as ``hashfed init``)."""
        return self.client_key.name


@dataclass(frozen=True)
class DemoFederation:
    """The federation on disk."""

    root: Path
    manifest: Path
    members: dict[str, DemoMember]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (held together while chosen)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _config_text(
    member_id: str, port: int, manifest: Path, client: SigningKey, *, witness: bool = False
) -> str:
    public = base64.b64encode(client.public.raw).decode()
    witness_line = 'witness_key = "keys/witness.key"\n' if witness else ""
    return f"""\
# Demo node of {member_id} (written by `hashfed demo`).
[node]
member_id = {json.dumps(member_id)}
listen = "127.0.0.1:{port}"
shutdown_timeout = 5.0

[database]
url = "sqlite:///node.db"

[keys]
log_key = "keys/log.key"
transport_key = "keys/transport.key"
transport_key_id = "{member_id}-t1"
{witness_line}
[manifest]
path = {json.dumps(str(manifest))}

[sync]
poll_interval = 1.0
connect_timeout = 2.0
request_timeout = 10.0

[[clients]]
key_id = "{client.name}"
public_key = "{public}"
roles = ["submit", "match", "admin"]
"""


def write_federation(root: Path) -> DemoFederation:
    """Keys, a steward-signed manifest and a node.toml per member, under ``root``."""
    now = int(time.time())
    steward = SigningKey.generate("demo-steward")
    ports = free_ports(len(MEMBERS))
    manifest_path = root / "manifest.json"
    members: dict[str, DemoMember] = {}
    entries: list[Member] = []
    for (member_id, name, roles), port in zip(MEMBERS, ports, strict=True):
        home = root / member_id
        origin = f"{member_id}.demo/hashfed"
        log_key = SigningKey.generate(origin)
        transport = SigningKey.generate(f"{member_id}-t1")
        client = SigningKey.generate(f"{member_id}-cli")
        save_private_key(home / "keys" / "log.key", log_key)
        save_private_key(home / "keys" / "transport.key", transport)
        save_private_key(home / "keys" / f"{member_id}-cli.key", client)
        witness = None
        if "witness" in roles:
            witness_key = SigningKey.generate(f"{member_id}.demo", KeyType.COSIGNATURE_V1)
            save_private_key(home / "keys" / "witness.key", witness_key)
            witness = witness_key.public.vkey()
        url = f"http://127.0.0.1:{port}"
        entries.append(
            Member(
                id=member_id,
                name=name,
                roles=roles,
                endpoint=url,
                log_origin=origin,
                log_vkey=log_key.public.vkey(),
                witness_vkey=witness,
                transport_keys=(
                    TransportKey(
                        key_id=f"{member_id}-t1",
                        public_key=base64.b64encode(transport.public.raw).decode(),
                        not_before=now - 3600,
                    ),
                ),
            )
        )
        config = home / "node.toml"
        config.write_text(
            _config_text(member_id, port, manifest_path, client, witness=witness is not None),
            encoding="utf-8",
        )
        members[member_id] = DemoMember(
            member_id, name, url, config, log_key, client, home / "keys" / f"{member_id}-cli.key"
        )
    manifest = Manifest(
        federation="demo",
        version=1,
        issued_at=now - 60,
        members=tuple(entries),
        policy=Policy(),
        stewards=(steward.public.vkey(),),
        steward_quorum=1,
    )
    signed = sign_manifest(manifest, [steward])
    manifest_path.write_text(json.dumps(signed_manifest_json(signed), indent=2), encoding="utf-8")
    return DemoFederation(root, manifest_path, members)


class NodeProcess:
    """``hashfed serve`` for one demo member."""

    def __init__(self, member: DemoMember) -> None:
        self.member = member
        self.log_path = member.config.parent / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process (returns at once; :meth:`wait_ready` waits)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("HASHFED_")}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, our own interpreter
                [sys.executable, "-m", "federation", "serve", "--config", str(self.member.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.member.config.parent,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Block until ``/readyz`` answers 200; RuntimeError with the log's tail otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"node {self.member.member_id} exited:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.member.url}/readyz", timeout=2) as answer:  # noqa: S310 - loopback http
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"node {self.member.member_id} not ready in {timeout:g}s:\n{self.tail()}"
        )

    def tail(self, chars: int = 2000) -> str:
        """The end of the node's log, for error messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait, then SIGKILL.  Safe to call twice."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
