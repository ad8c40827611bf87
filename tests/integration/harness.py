"""Real federations on loopback for integration tests.

:func:`make_federation` writes a small federation to disk — per member a log key and a
transport key (0600 files), a signed manifest, one ``node.toml`` and client keys — and
:class:`Node` runs ``python -m federation serve --config node.toml`` as a subprocess on a free
loopback port (``listen = "127.0.0.1:0"``; the port is read from the ``listening on`` line),
waits for ``/readyz``, and stops it with SIGTERM (then SIGKILL).  :func:`client` opens a
:class:`SignedSession` for one of a member's clients.

For multi-node federations, ``make_federation(..., loopback=True)`` gives every member a fixed
free loopback port, listed as its manifest endpoint, and a ``[sync]`` section (fast polling),
so the nodes replicate from one another; without it endpoints are placeholders and replication
is off (single-node tests).  :func:`free_ports` and :func:`wait_until` help such tests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from federation.client.signer import SignedSession
from federation.core.entries import Submission
from federation.core.keys import KeyType, SigningKey
from federation.core.labels import Labels
from federation.core.manifest import (
    Manifest,
    Member,
    Policy,
    TransportKey,
    sign_manifest,
    signed_manifest_json,
)
from federation.core.signals import Md5Signal
from federation.keyfile import save_private_key
from federation.log.writer import LogWriter
from federation.store import open_store

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class ClientSpec:
    """One of a member's own clients."""

    key_id: str
    roles: tuple[str, ...]
    key: SigningKey


@dataclass(frozen=True)
class MemberSpec:
    """Everything the tests need to know about one member on disk."""

    member_id: str
    log_origin: str
    log_key: SigningKey
    transport_key: SigningKey
    config: Path
    clients: dict[str, ClientSpec] = field(default_factory=dict)
    witness_key: SigningKey | None = None
    """The cosignature key of a ``witness`` member (saved as keys/witness.key)."""


@dataclass(frozen=True)
class Federation:
    """A federation written to ``root``."""

    root: Path
    manifest: Path
    members: dict[str, MemberSpec]
    steward: SigningKey | None = None
    """The one steward key that signed the manifest (for manifest update tests)."""


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports free right now (all held open until all are chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, within: float = 20.0, what: str = "condition"
) -> None:
    """Poll ``check`` until it is true; AssertionError naming ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


def make_federation(
    root: Path,
    member_ids: Sequence[str] = ("police",),
    *,
    database_urls: dict[str, str] | None = None,
    max_body_bytes: int = 65536,
    max_batch: int = 50,
    min_pdq_quality: int = 50,
    loopback: bool = False,
    roles: dict[str, tuple[str, ...]] | None = None,
    poll_interval: float = 0.2,
    chunk_size: int | None = None,
    endpoints: dict[str, str] | None = None,
    witness_quorum: int = 0,
    extra_config: dict[str, list[str]] | None = None,
) -> Federation:
    """Write keys, a signed manifest and one node.toml per member under ``root``.

    ``loopback`` assigns each member a free port (its listen address and manifest endpoint)
    and turns replication on with ``poll_interval``; ``endpoints`` overrides a member's
    manifest endpoint (e.g. to put a test relay in front of it); ``roles`` overrides the
    default manifest roles (consumer, submitter) per member.
    """
    now = int(time.time())
    ports = dict(zip(member_ids, free_ports(len(member_ids)), strict=True)) if loopback else {}
    steward = SigningKey.generate("steward-1")
    specs: dict[str, MemberSpec] = {}
    members: list[Member] = []
    for member_id in member_ids:
        origin = f"{member_id}.example/hashfed"
        log_key = SigningKey.generate(origin)
        transport = SigningKey.generate(f"{member_id}-t1")
        keydir = root / member_id / "keys"
        save_private_key(keydir / "log.key", log_key)
        save_private_key(keydir / "transport.key", transport)
        clients = {
            name: ClientSpec(
                f"{member_id}-{name}", roles, SigningKey.generate(f"{member_id}-{name}")
            )
            for name, roles in (("cli", ("submit", "match", "admin")), ("reader", ("match",)))
        }
        member_roles = (roles or {}).get(member_id, ("consumer", "submitter"))
        witness_key = (
            SigningKey.generate(f"{member_id}.example", KeyType.COSIGNATURE_V1)
            if "witness" in member_roles
            else None
        )
        witness = None if witness_key is None else witness_key.public.vkey()
        if witness_key is not None:
            save_private_key(keydir / "witness.key", witness_key)
        members.append(
            Member(
                id=member_id,
                witness_vkey=witness,
                name=f"{member_id} unit",
                roles=member_roles,
                endpoint=(endpoints or {}).get(member_id)
                or (
                    f"http://127.0.0.1:{ports[member_id]}"
                    if loopback
                    else f"http://{member_id}.example"
                ),
                log_origin=origin,
                log_vkey=log_key.public.vkey(),
                transport_keys=(
                    TransportKey(
                        key_id=f"{member_id}-t1",
                        public_key=base64.b64encode(transport.public.raw).decode(),
                        not_before=now - 3600,
                    ),
                ),
            )
        )
        config = root / member_id / "node.toml"
        db = (database_urls or {}).get(member_id, "sqlite:///node.db")
        lines = [
            "[node]",
            f"member_id = {_toml_str(member_id)}",
            f"listen = {_toml_str(f'127.0.0.1:{ports.get(member_id, 0)}')}",
            "shutdown_timeout = 5.0",
            "[database]",
            f"url = {_toml_str(db)}",
            "[keys]",
            'log_key = "keys/log.key"',
            'transport_key = "keys/transport.key"',
            f"transport_key_id = {_toml_str(member_id + '-t1')}",
            *(['witness_key = "keys/witness.key"'] if witness_key is not None else []),
            "[manifest]",
            f"path = {_toml_str(str(root / 'manifest.json'))}",
            "[limits]",
            f"max_body_bytes = {max_body_bytes}",
            f"max_batch = {max_batch}",
            "[sync]",
            f"enabled = {'true' if loopback else 'false'}",
            f"poll_interval = {poll_interval}",
            "connect_timeout = 2.0",
            "request_timeout = 10.0",
        ]
        if chunk_size is not None:
            lines.append(f"chunk_size = {chunk_size}")
        lines += (extra_config or {}).get(member_id, [])
        for c in clients.values():
            public = base64.b64encode(c.key.public.raw).decode()
            lines += [
                "[[clients]]",
                f"key_id = {_toml_str(c.key_id)}",
                f"public_key = {_toml_str(public)}",
                f"roles = {json.dumps(list(c.roles))}",
            ]
        config.write_text("\n".join(lines) + "\n")
        specs[member_id] = MemberSpec(
            member_id, origin, log_key, transport, config, clients, witness_key
        )
    manifest = Manifest(
        federation="testfed",
        version=1,
        issued_at=now - 60,
        members=tuple(members),
        policy=Policy(min_pdq_quality=min_pdq_quality, witness_quorum=witness_quorum),
        stewards=(steward.public.vkey(),),
        steward_quorum=1,
    )
    path = root / "manifest.json"
    path.write_text(json.dumps(signed_manifest_json(sign_manifest(manifest, [steward]))))
    return Federation(root, path, specs, steward)


class Node:
    """One ``hashfed serve`` subprocess."""

    def __init__(self, spec: MemberSpec) -> None:
        self.spec = spec
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.stderr_path = spec.config.parent / "stderr.log"

    def start(self) -> Node:
        """Start the process and wait until it listens and ``/readyz`` answers 200."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("HASHFED_")}
        env["PYTHONPATH"] = str(REPO)
        stderr = self.stderr_path.open("ab")
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, our own interpreter
            [sys.executable, "-m", "federation", "serve", "--config", str(self.spec.config)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=self.spec.config.parent,
        )
        stderr.close()
        self.url = self._wait_listening()
        self._wait_ready()
        return self

    def _fail(self, why: str) -> RuntimeError:
        tail = self.stderr_path.read_text(errors="replace")[-3000:]
        self.kill()
        return RuntimeError(f"node {self.spec.member_id}: {why}\n--- stderr ---\n{tail}")

    def _wait_listening(self) -> str:
        assert self.proc is not None
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        buffer = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    raise self._fail("exited before listening")
                buffer += chunk
                for line in buffer.decode(errors="replace").splitlines():
                    if line.startswith("listening on "):
                        return line.removeprefix("listening on ").strip()
            elif self.proc.poll() is not None:
                raise self._fail(f"exited with {self.proc.returncode} before listening")
        raise self._fail("did not print its listening line in time")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise self._fail("/readyz did not answer 200 in time")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, then SIGKILL; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL at once (crash simulation)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def _close(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


@asynccontextmanager
async def client(node: Node, name: str = "cli") -> AsyncIterator[SignedSession]:
    """A signed session for client ``name`` of the node's member."""
    spec = node.spec.clients[name]
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield SignedSession(
            session,
            key=spec.key,
            keyid=spec.key_id,
            destination=node.spec.member_id,
            clock=time.time,
        )


@asynccontextmanager
async def member_writer(spec: MemberSpec, url: str | None = None) -> AsyncIterator[LogWriter]:
    """``spec``'s real :class:`LogWriter` on its node's database (or ``url``), opened, with no
    node running: how tests and benchmarks append in bulk, or play a thief holding the key."""
    store = await open_store(url or f"sqlite:///{spec.config.parent / 'node.db'}")
    try:
        writer = LogWriter(
            store,
            member_id=spec.member_id,
            origin=spec.log_origin,
            key=spec.log_key,
            clock=time.time,
        )
        await writer.open()
        yield writer
    finally:
        await store.close()


async def populate_log(spec: MemberSpec, count: int, *, batch: int = 1000, start: int = 0) -> None:
    """Append ``count`` MD5 submissions to ``spec``'s own log directly, before its node starts.

    Goes through the real :class:`LogWriter` (signed entries, signed checkpoints), just without
    HTTP, so a test or benchmark can hold a large federation without waiting for requests.
    """
    labels = Labels(categories=("csam",), severity="high", confirmed_by="police")
    now = int(time.time())
    async with member_writer(spec) as writer:
        for first in range(start, start + count, batch):
            await writer.append(
                [
                    Submission(
                        origin=spec.member_id,
                        id=f"bulk-{n}",
                        created=now,
                        signal=Md5Signal(value=f"{n:032x}"),
                        labels=labels,
                    )
                    for n in range(first, min(first + batch, start + count))
                ]
            )
