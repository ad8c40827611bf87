"""Signing outbound requests with RFC 9421 HTTP Message Signatures (``spec/auth.md``).

:func:`signature_headers` produces the headers for one request from its method, absolute
URL, destination member and body bytes; :class:`SignedSession` wraps one
``aiohttp.ClientSession`` (one per peer) and signs every request it sends.

The signed ``@path``/``@query`` must be byte-identical to the request line aiohttp writes, so
both are taken from the same :class:`yarl.URL` object that is handed to aiohttp (its
``raw_path_qs``), never from the string the caller passed.  The body is serialised here, once,
so the digest covers exactly the bytes that go on the wire; redirects are not followed because
the signature binds the original path and destination.
"""

from __future__ import annotations

import json as jsonlib
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import aiohttp
from yarl import URL

from federation.core.httpsig import MAX_AGE, create_signature_headers
from federation.core.keys import SigningKey
from federation.errors import InputError

NONCE_BYTES = 18  # 144 random bits, 24 base64url characters


def new_nonce() -> str:
    """A fresh random nonce for one request (well above the 16-character minimum)."""
    return secrets.token_urlsafe(NONCE_BYTES)


def _absolute(url: str | URL) -> URL:
    parsed = url if isinstance(url, URL) else URL(url)
    if not parsed.is_absolute():
        raise InputError(f"signed requests need an absolute URL, got {str(url)!r}", field="url")
    return parsed


def signature_headers(
    key: SigningKey,
    *,
    keyid: str,
    method: str,
    url: str | URL,
    destination: str,
    body: bytes | None,
    now: float,
    nonce: str | None = None,
    lifetime: int = MAX_AGE,
) -> dict[str, str]:
    """Headers authenticating one request: ``Hashfed-Destination``, ``Content-Digest`` (when
    there is a body), ``Signature-Input`` and ``Signature``.

    ``now`` is the signer's clock in unix seconds; ``nonce`` defaults to :func:`new_nonce`.
    """
    return create_signature_headers(
        key,
        keyid=keyid,
        method=method.upper(),
        target=_absolute(url).raw_path_qs,
        destination=destination,
        body=body,
        created=int(now),
        nonce=new_nonce() if nonce is None else nonce,
        lifetime=lifetime,
    )


class SignedSession:
    """An ``aiohttp.ClientSession`` whose every request is signed for one destination member.

    The session is borrowed, not owned: whoever created it closes it.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        key: SigningKey,
        keyid: str,
        destination: str,
        clock: Callable[[], float],
        nonce_factory: Callable[[], str] = new_nonce,
    ) -> None:
        self._session = session
        self._key = key
        self._keyid = keyid
        self._destination = destination
        self._clock = clock
        self._nonce_factory = nonce_factory

    @asynccontextmanager
    async def request(
        self,
        method: str,
        url: str | URL,
        *,
        body: bytes | None = None,
        json: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a signed request; use as ``async with signed.request(...) as response``.

        Pass raw bytes as ``body`` or an object as ``json`` (serialised compactly here).
        Timeouts come from the wrapped session, which should set them explicitly.
        """
        if body is not None and json is not None:
            raise InputError("pass either body or json, not both", field="body")
        all_headers = dict(headers or {})
        if json is not None:
            body = jsonlib.dumps(json, separators=(",", ":"), ensure_ascii=False).encode()
            all_headers.setdefault("Content-Type", "application/json")
        target = _absolute(url)
        all_headers.update(
            signature_headers(
                self._key,
                keyid=self._keyid,
                method=method,
                url=target,
                destination=self._destination,
                body=body,
                now=self._clock(),
                nonce=self._nonce_factory(),
            )
        )
        request = self._session.request(
            method.upper(), target, data=body, headers=all_headers, allow_redirects=False
        )
        async with request as response:
            yield response
