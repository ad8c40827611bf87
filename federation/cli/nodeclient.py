"""How the client commands (``submit``, ``match``, ``retract``, ...) find a node and sign for it.

A client command talks to its member's *own* node with the member's CLI client key (the one
``hashfed init`` wrote and listed under ``[[clients]]``), signing every request with RFC 9421
HTTP Message Signatures for the node's member id (``spec/auth.md``).  Four things are needed:

=================  =====================  ========================  ===========================
what               option                 environment               from ``--config node.toml``
=================  =====================  ========================  ===========================
node URL           ``--node URL``         ``HASHFED_NODE``          ``[node] listen``
client key file    ``--key FILE``         ``HASHFED_CLIENT_KEY``    ``keys/<member>-cli.key``
client key id      ``--key-id ID``        ``HASHFED_CLIENT_KEY_ID`` ``<member>-cli``
member id          ``--member ID``        ``HASHFED_MEMBER``        ``[node] member_id``
=================  =====================  ========================  ===========================

An option beats the environment, which beats the config file; ``--config`` defaults to
``./node.toml`` when that file exists.  The key file from the config is looked for next to
the transport key (where ``init`` puts every key) and checked against the public key the
config lists for that client, so a mismatch is reported here rather than as a 401.

Errors the node answers with are re-raised by HTTP status so ``main`` picks the exit code:
4xx input problems -> :class:`InputError` (exit 2), 401/403 -> :class:`AuthError` /
:class:`ForbiddenError` (exit 1), 502-504 and an unreachable node -> :class:`PeerError`
(exit 3).  The node's code is kept; its message is quoted as the node's, not ours.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from federation.errors import (
    AuthError,
    ConfigError,
    FederationError,
    ForbiddenError,
    InputError,
    PeerError,
)

if TYPE_CHECKING:
    import aiohttp

    from federation.client.signer import SignedSession
    from federation.core.keys import SigningKey

ENV_NODE = "HASHFED_NODE"
ENV_KEY = "HASHFED_CLIENT_KEY"
ENV_KEY_ID = "HASHFED_CLIENT_KEY_ID"
ENV_MEMBER = "HASHFED_MEMBER"
DEFAULT_CONFIG = Path("node.toml")
DEFAULT_TIMEOUT = 30.0
_INPUT_STATUSES = {400, 404, 409, 413, 415, 422}
_UNAVAILABLE_STATUSES = {502, 503, 504}


@dataclass(frozen=True)
class NodeTarget:
    """Everything needed to send signed requests to one node."""

    url: str
    """Base URL of the node, without a trailing slash."""
    member: str
    """The node's member id: the signature's destination."""
    key: SigningKey
    """The client's private key."""
    key_id: str
    """The RFC 9421 ``keyid`` the node knows the client key by."""


def add_node_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options every client command shares (see the module docstring)."""
    group = parser.add_argument_group("node", "which node to talk to and the key to sign with")
    group.add_argument(
        "--config", type=Path, metavar="FILE", help="node.toml (default ./node.toml)"
    )
    group.add_argument("--node", metavar="URL", help=f"node base URL (env {ENV_NODE})")
    group.add_argument("--key", type=Path, metavar="FILE", help=f"client key file (env {ENV_KEY})")
    group.add_argument("--key-id", metavar="ID", help=f"client key id (env {ENV_KEY_ID})")
    group.add_argument("--member", metavar="ID", help=f"the node's member id (env {ENV_MEMBER})")
    group.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S", help="seconds per request"
    )


def url_from_listen(listen: str) -> str:
    """The URL a local client reaches a node at, from its ``listen`` address.

    A wildcard bind address is reached over loopback; port 0 (pick a free port) cannot be
    known in advance, so it needs ``--node``.
    """
    from federation.config import split_listen

    host, port = split_listen(listen)
    if port == 0:
        raise ConfigError(
            "the config listens on port 0 (a free port chosen at start); pass --node URL",
            code="node_url_unknown",
            field="node",
        )
    if host in ("0.0.0.0", ""):  # noqa: S104 - mapping a wildcard bind to loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _from_config(path: Path, key_id: str | None) -> dict[str, Any]:
    """URL, member, key id and key path taken from a node config."""
    from federation.cli.keys_cmd import key_file_stem
    from federation.config import load_config

    config = load_config(path)
    member = str(config.node.member_id)
    wanted = key_id or f"{member}-cli"
    client = next((c for c in config.clients if c.key_id == wanted), None)
    return {
        "url": url_from_listen(config.node.listen),
        "member": member,
        "key_id": wanted,
        "key": config.keys.transport_key.parent / f"{key_file_stem(wanted)}.key",
        "public_key": client.raw_public_key() if client is not None else None,
    }


def resolve_target(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> NodeTarget:
    """Options, then environment, then the config file; raises ConfigError naming what lacks."""
    from federation.keyfile import load_private_key

    env = os.environ if env is None else env
    url = args.node or env.get(ENV_NODE)
    key_path = args.key or (Path(env[ENV_KEY]) if env.get(ENV_KEY) else None)
    key_id = args.key_id or env.get(ENV_KEY_ID)
    member = args.member or env.get(ENV_MEMBER)
    public_key: bytes | None = None
    config_path = args.config
    if config_path is None and DEFAULT_CONFIG.exists() and not (url and key_path and member):
        config_path = DEFAULT_CONFIG
    if config_path is not None and not (url and key_path and key_id and member):
        found = _from_config(config_path, key_id)
        url = url or found["url"]
        member = member or found["member"]
        key_id = key_id or found["key_id"]
        if key_path is None:
            key_path, public_key = found["key"], found["public_key"]
    missing = [
        name
        for name, value in (("--node", url), ("--key", key_path), ("--member", member))
        if not value
    ]
    if missing:
        raise ConfigError(
            f"no node to talk to: give --config node.toml, or {', '.join(missing)}"
            f" (or {ENV_NODE}, {ENV_KEY}, {ENV_MEMBER})",
            code="node_unknown",
            field=missing[0].lstrip("-"),
        )
    assert key_path is not None
    assert url is not None
    assert member is not None
    key = load_private_key(key_path)
    if public_key is not None and key.public.raw != public_key:
        raise ConfigError(
            f"{key_path} is not the key the config lists for client {key_id!r}",
            code="client_key_mismatch",
            field="key",
        )
    return NodeTarget(url=url.rstrip("/"), member=member, key=key, key_id=key_id or key.name)


def node_error(status: int, text: str) -> FederationError:
    """The exception for a non-2xx answer, keeping the node's code and field."""
    code, field, message = f"http_{status}", None, text.strip()[:300] or f"HTTP {status}"
    try:
        body = json.loads(text)
        error = body["error"]
        code, message = str(error["code"]), str(error["message"])
        field = error.get("field")
    except (ValueError, KeyError, TypeError):
        pass
    quoted = f"node answered {status}: {message}"
    if status in _INPUT_STATUSES:
        return InputError(quoted, code=code, field=field)
    if status == 401:
        return AuthError(quoted, code=code, field=field)
    if status == 403:
        return ForbiddenError(quoted, code=code, field=field)
    if status in _UNAVAILABLE_STATUSES:
        return PeerError(quoted, code=code, field=field)
    return FederationError(quoted, code=code, field=field)


class NodeClient:
    """One session to one node; every request signed, every answer parsed as JSON.

    Use as ``async with NodeClient(target) as node: await node.post("/v1/match", body)``.
    """

    def __init__(self, target: NodeTarget, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.target = target
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._signed: SignedSession | None = None

    async def __aenter__(self) -> NodeClient:
        import aiohttp

        from federation.client.signer import SignedSession

        timeout = aiohttp.ClientTimeout(total=self._timeout, connect=min(self._timeout, 10.0))
        self._session = aiohttp.ClientSession(timeout=timeout)
        self._signed = SignedSession(
            self._session,
            key=self.target.key,
            keyid=self.target.key_id,
            destination=self.target.member,
            clock=time.time,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def get(self, path: str) -> Any:
        """Signed GET of ``path``; the parsed JSON answer."""
        return await self._call("GET", path, None)

    async def post(self, path: str, body: Mapping[str, Any]) -> Any:
        """Signed POST of ``body`` as JSON to ``path``; the parsed JSON answer."""
        return await self._call("POST", path, body)

    async def _call(self, method: str, path: str, body: Mapping[str, Any] | None) -> Any:
        import aiohttp

        if self._signed is None:
            raise RuntimeError("NodeClient used outside 'async with'")
        url = self.target.url + path
        try:
            async with self._signed.request(method, url, json=body) as response:
                text = await response.text()
                status = response.status
        except (TimeoutError, aiohttp.ClientConnectionError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                reason = f"no answer within {self._timeout:g}s"
            raise PeerError(
                f"cannot reach node {self.target.url}: {reason}", code="node_unreachable"
            ) from None
        if status >= 300:
            raise node_error(status, text)
        try:
            return json.loads(text)
        except ValueError:
            raise PeerError(
                f"node {self.target.url} answered {status} with a body that is not JSON",
                code="bad_node_answer",
            ) from None
