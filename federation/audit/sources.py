"""Where the auditor reads logs from: nodes over HTTP, or an offline bundle file.

Every node serves every log it holds under ``/v1/logs/{member_id}/...`` (its own included), and
those read routes are public, so an auditor needs nothing but the manifest's public keys.  When
an auditor key is configured and the node's URL is a member endpoint in the manifest, requests
are signed (RFC 9421, destination = that member) like :class:`~federation.sync.client.PeerClient`
does; otherwise they go unsigned.  PeerClient always signs and has no inclusion-proof call, so
this module carries its own small reader, with the same error mapping: whatever goes wrong
remotely is our :class:`~federation.errors.PeerError`, the remote's code quoted, never adopted.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, suppress
from typing import Any, Protocol

import aiohttp
from yarl import URL

from federation.client.signer import SignedSession
from federation.core.keys import SigningKey
from federation.errors import PeerError
from federation.sync.client import (
    MAX_JSON_BYTES,
    MAX_NOTE_BYTES,
    MAX_PAGE,
    PEER_BAD_RESPONSE,
    PEER_HTTP_ERROR,
    PEER_UNREACHABLE,
)

TIMEOUT = aiohttp.ClientTimeout(total=60, connect=5, sock_read=30)


class LogSource(Protocol):
    """Read access to the logs one node (or one bundle) holds."""

    name: str
    """The node URL or bundle path, as findings name it."""

    async def checkpoints(self, member_id: str) -> list[str]:
        """Signed checkpoint notes held for the member's log (latest first); [] if none."""
        ...

    async def entries(self, member_id: str, start: int, limit: int) -> list[tuple[int, bytes]]:
        """Leaves ``[start, start+limit)`` as served (may be short or have gaps)."""
        ...

    async def consistency(self, member_id: str, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 consistency proof between two sizes of the member's log."""
        ...

    async def inclusion(self, member_id: str, index: int, size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size``."""
        ...

    async def close(self) -> None:
        """Release connections or files."""
        ...


class HttpSource:
    """A node's public read routes (see module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        key: SigningKey | None = None,
        keyid: str | None = None,
        destination: str | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.name = url.rstrip("/")
        self._base = URL(self.name)
        self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        self._signed: SignedSession | None = None
        if key is not None and keyid is not None and destination is not None and clock:
            self._signed = SignedSession(
                self._session, key=key, keyid=keyid, destination=destination, clock=clock
            )

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._session.close()

    def _open(self, url: URL) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        if self._signed is not None:
            return self._signed.request("GET", url)
        return self._session.get(url, allow_redirects=False)

    async def _get(self, path: str, query: dict[str, int], cap: int) -> tuple[int, bytes]:
        url = self._base.with_path(self._base.path.rstrip("/") + path)
        if query:
            url = url.with_query({k: str(v) for k, v in query.items()})
        try:
            async with self._open(url) as resp:
                if resp.content_length is not None and resp.content_length > cap:
                    raise self._bad(f"{path}: body larger than {cap} bytes")
                chunks: list[bytes] = []
                total = 0
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    total += len(chunk)
                    if total > cap:
                        raise self._bad(f"{path}: body larger than {cap} bytes")
                    chunks.append(chunk)
                return resp.status, b"".join(chunks)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise PeerError(
                f"node {self.name} unreachable for GET {path}: {type(exc).__name__}",
                code=PEER_UNREACHABLE,
            ) from None

    def _bad(self, what: str) -> PeerError:
        return PeerError(f"node {self.name} sent a bad response: {what}", code=PEER_BAD_RESPONSE)

    def _http_error(self, path: str, status: int, body: bytes) -> PeerError:
        remote = None
        with suppress(ValueError, KeyError, TypeError):
            remote = json.loads(body)["error"]["code"]
        quoted = (
            f" (remote code {remote!r})" if isinstance(remote, str) and len(remote) < 64 else ""
        )
        return PeerError(
            f"node {self.name} answered GET {path} with HTTP {status}{quoted}", code=PEER_HTTP_ERROR
        )

    async def _json(self, path: str, query: dict[str, int]) -> dict[str, Any]:
        status, body = await self._get(path, query, MAX_JSON_BYTES)
        if status != 200:
            raise self._http_error(path, status, body)
        try:
            value = json.loads(body)
        except ValueError:
            raise self._bad(f"{path} is not JSON") from None
        if not isinstance(value, dict):
            raise self._bad(f"{path} is not a JSON object")
        return value

    def _b64(self, text: object) -> bytes:
        if not isinstance(text, str):
            raise self._bad("a value is not a base64 string")
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise self._bad("a value is not base64") from None

    async def checkpoints(self, member_id: str) -> list[str]:
        """The node's latest checkpoint for the log; [] when it holds no such log (404)."""
        path = f"/v1/logs/{member_id}/checkpoint"
        status, body = await self._get(path, {}, MAX_NOTE_BYTES)
        if status == 404:
            return []
        if status != 200:
            raise self._http_error(path, status, body)
        try:
            return [body.decode("utf-8")]
        except UnicodeDecodeError:
            raise self._bad("checkpoint is not UTF-8") from None

    async def entries(self, member_id: str, start: int, limit: int) -> list[tuple[int, bytes]]:
        """One page of leaves; indices outside the page are a bad response."""
        limit = max(1, min(limit, MAX_PAGE))
        value = await self._json(f"/v1/logs/{member_id}/entries", {"start": start, "limit": limit})
        items = value.get("entries")
        if not isinstance(items, list):
            raise self._bad("entries page needs 'entries' (list)")
        out: list[tuple[int, bytes]] = []
        for item in items:
            index = item.get("index") if isinstance(item, dict) else None
            if not isinstance(index, int) or not start <= index < start + limit:
                raise self._bad("entry index missing or outside the requested page")
            out.append((index, self._b64(item.get("leaf"))))
        return out

    async def _proof(self, path: str, query: dict[str, int]) -> list[bytes]:
        proof = (await self._json(path, query)).get("proof")
        if not isinstance(proof, list) or len(proof) > 128:
            raise self._bad(f"{path} needs 'proof' (a list of at most 128 hashes)")
        return [self._b64(p) for p in proof]

    async def consistency(self, member_id: str, size1: int, size2: int) -> list[bytes]:
        """Consistency proof from the node."""
        return await self._proof(
            f"/v1/logs/{member_id}/proof/consistency", {"from": size1, "to": size2}
        )

    async def inclusion(self, member_id: str, index: int, size: int) -> list[bytes]:
        """Inclusion proof from the node."""
        return await self._proof(
            f"/v1/logs/{member_id}/proof/inclusion", {"index": index, "size": size}
        )

    async def manifest(self) -> bytes:
        """The signed manifest the node runs with (raw JSON), for ``log export``."""
        status, body = await self._get("/v1/manifest", {}, MAX_JSON_BYTES)
        if status != 200:
            raise self._http_error("/v1/manifest", status, body)
        return body
