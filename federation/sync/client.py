"""HTTP client for one peer node: the log read routes and the notify doorbell (spec §2, §6).

One :class:`PeerClient` per peer owns one ``aiohttp.ClientSession`` with explicit timeouts and
signs every request with RFC 9421 through :class:`~federation.client.signer.SignedSession`,
naming the peer's member id as destination.  Route rule: a log is asked for under
``/v1/log/...`` when the peer *is* its origin and under ``/v1/logs/{member_id}/...`` otherwise.

A manifest update may move the peer (a new ``endpoint``): :meth:`PeerClient.repoint` sends
every later request to the new address, while a request already in flight finishes on the old
one; the old address's HTTP session is closed once nothing uses it.  :meth:`PeerClient.retire`
does the same for a peer the manifest dropped.

Whatever goes wrong remotely becomes our :class:`~federation.errors.PeerError` with one of
:data:`PEER_CODES`; the remote's own error code is quoted in the message, never relayed as ours.
Bodies are read with a size cap, so a hostile peer cannot make us buffer without bound.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from yarl import URL

from federation.client.signer import SignedSession
from federation.core.keys import SigningKey
from federation.core.manifest import Member
from federation.errors import PeerError

PEER_UNREACHABLE: Final = "peer_unreachable"
PEER_HTTP_ERROR: Final = "peer_http_error"
PEER_BAD_RESPONSE: Final = "peer_bad_response"
PEER_CODES: Final = (PEER_UNREACHABLE, PEER_HTTP_ERROR, PEER_BAD_RESPONSE)

MAX_PAGE: Final = 1000
MAX_NOTE_BYTES: Final = 64 * 1024
MAX_JSON_BYTES: Final = 16 * 1024 * 1024  # a full page of maximal leaves, base64, with room
DEFAULT_TIMEOUT: Final = aiohttp.ClientTimeout(total=30, connect=5, sock_read=20)


@dataclass(frozen=True)
class EntriesPage:
    """One page of leaves as served, and the size of the serving node's current checkpoint."""

    entries: tuple[tuple[int, bytes], ...]
    size: int


class PeerHTTPError(PeerError):
    """The peer answered with an HTTP error status; its code is quoted, never adopted."""

    def __init__(self, message: str, *, http_status: int, remote_code: str | None) -> None:
        super().__init__(message, code=PEER_HTTP_ERROR)
        self.http_status = http_status
        self.remote_code = remote_code


def _bad(peer: str, what: str) -> PeerError:
    return PeerError(f"peer {peer} sent a bad response: {what}", code=PEER_BAD_RESPONSE)


@dataclass(eq=False)
class _Session:
    """One HTTP session of a client and how many requests use it right now."""

    http: aiohttp.ClientSession
    signed: SignedSession
    users: int = 0


class PeerClient:
    """Signed requests to one peer (see module docstring)."""

    def __init__(
        self,
        peer: Member,
        *,
        key: SigningKey,
        keyid: str,
        clock: Callable[[], float],
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
    ) -> None:
        self.peer_id = peer.id
        self._base = URL(peer.endpoint.rstrip("/"))
        self._timeout = timeout
        self._key, self._keyid, self._clock = key, keyid, clock
        self._current: _Session | None = None
        self._sessions: set[_Session] = set()  # every session not yet closed
        self._closing: set[asyncio.Task[None]] = set()
        self._retired = False

    @property
    def endpoint(self) -> str:
        """The base URL requests go to (the peer's manifest ``endpoint``)."""
        return str(self._base)

    @property
    def open_sessions(self) -> int:
        """HTTP sessions open and not yet being closed: at most one, plus one per earlier
        address (or retirement) that a request in flight still uses."""
        return len(self._sessions)

    def repoint(self, endpoint: str) -> bool:
        """Send requests to ``endpoint`` from now on; True if it differs from the current one.

        Requests in flight finish on the old address; its session is closed when the last of
        them ends (or at once if none is in flight).  Call it from the event loop.
        """
        base = URL(endpoint.rstrip("/"))
        if base == self._base:
            return False
        self._base = base
        self._drop_current()
        return True

    def retire(self) -> None:
        """The peer left the manifest: close the session once requests in flight end.

        A request made afterwards (the rest of a pull that began before) still works; its
        session is closed as soon as it ends.
        """
        self._retired = True
        self._drop_current()

    def _drop_current(self) -> None:
        old, self._current = self._current, None
        if old is not None and old.users == 0:
            self._close_later(old)

    def _close_later(self, session: _Session) -> None:
        self._sessions.discard(session)
        task = asyncio.get_running_loop().create_task(session.http.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _acquire(self) -> _Session:
        # Opened on first use, inside the running loop: building a node (and its clients)
        # must not open sockets or sessions that a caller that never serves would leak.
        if self._current is None:
            http = aiohttp.ClientSession(timeout=self._timeout)
            signed = SignedSession(
                http, key=self._key, keyid=self._keyid, destination=self.peer_id, clock=self._clock
            )
            self._current = _Session(http, signed)
            self._sessions.add(self._current)
        session = self._current
        session.users += 1
        return session

    def _release(self, session: _Session) -> None:
        session.users -= 1
        if session.users:
            return
        if session is self._current and self._retired:
            self._current = None
        if session is not self._current:
            self._close_later(session)

    async def close(self) -> None:
        """Close every session this client opened (the replicator's owner does this on
        shutdown, after the requests using it have ended or been cancelled)."""
        self._current = None
        sessions, self._sessions = list(self._sessions), set()
        for session in sessions:
            await session.http.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _log_path(self, member_id: str, tail: str) -> str:
        prefix = "/v1/log" if member_id == self.peer_id else f"/v1/logs/{member_id}"
        return f"{prefix}/{tail}"

    async def _request(
        self,
        method: str,
        path: str,
        query: dict[str, int] | None = None,
        *,
        json_body: object = None,
        cap: int = MAX_JSON_BYTES,
    ) -> bytes:
        url = self._base.with_path(self._base.path.rstrip("/") + path)
        if query:
            url = url.with_query({k: str(v) for k, v in query.items()})
        session = self._acquire()
        try:
            async with session.signed.request(method, url, json=json_body) as resp:
                body = await _read_capped(resp, cap, self.peer_id)
                if resp.status >= 300:
                    remote = _remote_code(body)
                    quoted = "" if remote is None else f" (remote code {remote!r})"
                    raise PeerHTTPError(
                        f"peer {self.peer_id} answered {method} {path} with HTTP {resp.status}"
                        + quoted,
                        http_status=resp.status,
                        remote_code=remote,
                    )
                return body
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise PeerError(
                f"peer {self.peer_id} unreachable for {method} {path}: {type(exc).__name__}",
                code=PEER_UNREACHABLE,
            ) from None
        finally:
            self._release(session)

    async def _json(self, path: str, query: dict[str, int]) -> dict[str, Any]:
        body = await self._request("GET", path, query)
        try:
            value = json.loads(body)
        except ValueError:
            raise _bad(self.peer_id, f"{path} is not JSON") from None
        if not isinstance(value, dict):
            raise _bad(self.peer_id, f"{path} is not a JSON object")
        return value

    async def get_checkpoint(self, member_id: str) -> str:
        """The latest checkpoint note the peer holds for ``member_id``'s log (unverified)."""
        body = await self._request(
            "GET", self._log_path(member_id, "checkpoint"), cap=MAX_NOTE_BYTES
        )
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(self.peer_id, "checkpoint is not UTF-8") from None

    async def get_entries(self, member_id: str, start: int, limit: int) -> EntriesPage:
        """Leaves ``[start, start+limit)`` of ``member_id``'s log as the peer holds them.

        Checks only the shape and that indices lie in the requested range; whether they are
        the right leaves is :func:`~federation.core.replication.verify_batch`'s job.
        """
        limit = max(1, min(limit, MAX_PAGE))
        value = await self._json(
            self._log_path(member_id, "entries"), {"start": start, "limit": limit}
        )
        items, size = value.get("entries"), value.get("size")
        if not isinstance(items, list) or not isinstance(size, int) or isinstance(size, bool):
            raise _bad(self.peer_id, "entries page needs 'entries' (list) and 'size' (int)")
        out: list[tuple[int, bytes]] = []
        for item in items:
            index = item.get("index") if isinstance(item, dict) else None
            leaf = item.get("leaf") if isinstance(item, dict) else None
            if not isinstance(index, int) or not isinstance(leaf, str):
                raise _bad(self.peer_id, "each entry needs 'index' (int) and 'leaf' (base64)")
            if not start <= index < start + limit:
                raise _bad(self.peer_id, f"entry index {index} outside the requested page")
            out.append((index, _b64(leaf, self.peer_id)))
        return EntriesPage(tuple(out), size)

    async def get_consistency(self, member_id: str, m: int, n: int) -> list[bytes]:
        """RFC 9162 consistency proof from size ``m`` to ``n`` of ``member_id``'s log."""
        value = await self._json(
            self._log_path(member_id, "proof/consistency"), {"from": m, "to": n}
        )
        proof = value.get("proof")
        if not isinstance(proof, list) or not all(isinstance(p, str) for p in proof):
            raise _bad(self.peer_id, "consistency proof needs 'proof' (list of base64)")
        if len(proof) > 128:
            raise _bad(self.peer_id, "consistency proof is longer than any tree allows")
        return [_b64(p, self.peer_id) for p in proof]

    async def notify(self, origin: str, note: str) -> None:
        """Ring the peer's doorbell: ``origin`` (a member id) has the checkpoint ``note``."""
        await self._request(
            "POST", "/v1/notify", json_body={"origin": origin, "checkpoint": note}, cap=64 * 1024
        )

    # Generic calls for the smaller protocols (manifest gossip): same signing, caps, errors.

    async def get_raw(self, path: str) -> bytes:
        """Signed GET of ``path`` on the peer; the body (capped), errors as PeerError."""
        return await self._request("GET", path)

    async def get_json(self, path: str, query: dict[str, int] | None = None) -> dict[str, Any]:
        """Signed GET of a JSON object route of the peer (shape checked by the caller)."""
        return await self._json(path, query or {})

    async def post_json(self, path: str, body: object) -> bytes:
        """Signed POST of ``body`` as JSON to ``path`` on the peer; the answer body."""
        return await self._request("POST", path, json_body=body)


def _b64(text: str, peer: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(peer, "a value is not base64") from None


def _remote_code(body: bytes) -> str | None:
    """The ``code`` of a hashfed error body, if it is a sane token; never the remote message."""
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    if isinstance(code, str) and code.isascii() and code.isprintable() and len(code) <= 64:
        return code
    return None


async def _read_capped(resp: aiohttp.ClientResponse, cap: int, peer: str) -> bytes:
    if resp.content_length is not None and resp.content_length > cap:
        raise _bad(peer, f"body of {resp.content_length} bytes exceeds {cap}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > cap:
            raise _bad(peer, f"body exceeds {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
