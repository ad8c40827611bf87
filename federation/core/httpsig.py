"""RFC 9421 HTTP Message Signatures and RFC 9530 Content-Digest, as hashfed profiles them.

This module owns everything about request authentication that needs no I/O: the structured
field values (RFC 8941 subset) carried in ``Signature-Input``, ``Signature`` and
``Content-Digest``, the signature base (RFC 9421 §2.5), the ``@path``/``@query`` derived
components (§2.2.6, §2.2.7), the time window, and producing the signature headers.  The
normative profile is ``spec/auth.md``; the server side (key registries, nonce replay
cache, aiohttp middleware) lives in ``federation.server.auth`` and the client side in
``federation.client.signer``.

Components are resolved from the request *as sent on the wire* (the raw, still
percent-encoded request target), never from a decoded or normalised URL: two
implementations that normalise differently would otherwise disagree on the signed bytes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from federation.core.keys import SigningKey
from federation.core.structured import (
    BareItem,
    Params,
    parse_dictionary,
    serialize_item,
    serialize_params,
)
from federation.errors import AuthError, InputError

SIGNATURE_LABEL = "hashfed"
SIGNATURE_TAG = "hashfed"
ALGORITHM = "ed25519"
DESTINATION_HEADER = "hashfed-destination"
DIGEST_HEADER = "content-digest"
BASE_COMPONENTS: tuple[str, ...] = ("@method", "@path", "@query", DESTINATION_HEADER)
BODY_COMPONENTS: tuple[str, ...] = ("@method", "@path", "@query", DIGEST_HEADER, DESTINATION_HEADER)
ALLOWED_COMPONENTS = frozenset(BODY_COMPONENTS)
MAX_CLOCK_SKEW = 60
MAX_AGE = 300
MIN_NONCE_LEN = 16
REQUIRED_PARAMS = ("created", "expires", "nonce", "keyid", "alg", "tag")

_DIGESTS = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}


@dataclass(frozen=True)
class SignatureParams:
    """One ``Signature-Input`` member: covered components and parameters, in received order.

    The order matters because ``@signature-params`` in the signature base is the member
    re-serialised as the sender wrote it; re-ordering would change the signed bytes.
    """

    components: tuple[str, ...]
    params: Params

    @classmethod
    def create(
        cls,
        components: Sequence[str],
        *,
        created: int,
        expires: int,
        nonce: str,
        keyid: str,
        alg: str = ALGORITHM,
        tag: str = SIGNATURE_TAG,
    ) -> SignatureParams:
        """The hashfed parameter set in its canonical order."""
        params = (
            ("created", created),
            ("expires", expires),
            ("nonce", nonce),
            ("keyid", keyid),
            ("alg", alg),
            ("tag", tag),
        )
        return cls(tuple(components), params)

    def get(self, name: str) -> BareItem | None:
        """The value of parameter ``name``, or None when absent."""
        return next((value for key, value in self.params if key == name), None)

    def serialize(self) -> str:
        """The inner-list serialisation used in ``Signature-Input`` and the signature base."""
        inner = " ".join(serialize_item(name) for name in self.components)
        return f"({inner}){serialize_params(self.params)}"


def _malformed(message: str) -> AuthError:
    return AuthError(message, code="signature_malformed")


def parse_signature_input(text: str) -> dict[str, SignatureParams]:
    """Parse ``Signature-Input`` into label → parameters (RFC 9421 §4.1)."""
    try:
        members = parse_dictionary(text)
    except InputError as exc:
        raise _malformed(f"Signature-Input: {exc.message}") from None
    result: dict[str, SignatureParams] = {}
    for label, (value, params) in members.items():
        if not isinstance(value, tuple):
            raise _malformed(f"Signature-Input member {label!r} must be an inner list")
        names: list[str] = []
        for item, item_params in value:
            if type(item) is not str or item_params:
                raise _malformed("covered components must be plain lowercase strings")
            names.append(item)
        for name, param in params:
            if name in ("created", "expires") and type(param) is not int:
                raise _malformed(f"parameter {name!r} must be an integer")
            if name in ("nonce", "keyid", "alg", "tag") and type(param) is not str:
                raise _malformed(f"parameter {name!r} must be a string")
        result[label] = SignatureParams(tuple(names), params)
    return result


def parse_signature(text: str) -> dict[str, bytes]:
    """Parse ``Signature`` into label → signature bytes (RFC 9421 §4.2)."""
    try:
        members = parse_dictionary(text)
    except InputError as exc:
        raise _malformed(f"Signature: {exc.message}") from None
    result: dict[str, bytes] = {}
    for label, (value, _params) in members.items():
        if not isinstance(value, bytes):
            raise _malformed(f"Signature member {label!r} must be a byte sequence")
        result[label] = value
    return result


def split_target(target: str) -> tuple[str, str]:
    """``@path`` and ``@query`` of a raw request target (RFC 9421 §2.2.6, §2.2.7).

    An empty path is ``/``; the query keeps its leading ``?`` and an absent or empty query
    is ``?`` alone.  Percent-encoding is kept exactly as sent.
    """
    path, _, query = target.partition("?")
    return path or "/", "?" + query


def component_values(method: str, target: str, headers: Mapping[str, str]) -> dict[str, str]:
    """Every component hashfed can cover, from the request line and lowercased headers."""
    path, query = split_target(target)
    values = {"@method": method, "@path": path, "@query": query}
    for name in (DESTINATION_HEADER, DIGEST_HEADER):
        if name in headers:
            values[name] = headers[name].strip(" \t")
    return values


def signature_base(params: SignatureParams, values: Mapping[str, str]) -> bytes:
    """The RFC 9421 §2.5 signature base: one line per component, then ``@signature-params``."""
    if len(set(params.components)) != len(params.components):
        raise _malformed("a component is covered twice")
    lines: list[str] = []
    for name in params.components:
        if name not in ALLOWED_COMPONENTS:
            raise _malformed(f"component {name!r} is not supported")
        value = values.get(name)
        if value is None:
            raise _malformed(f"covered component {name!r} is absent from the request")
        if "\n" in value or "\r" in value:
            raise _malformed(f"component {name!r} contains a newline")
        lines.append(f"{serialize_item(name)}: {value}")
    lines.append(f'"@signature-params": {params.serialize()}')
    try:
        return "\n".join(lines).encode("ascii")
    except UnicodeEncodeError:
        raise _malformed("signature base must be ASCII") from None


def check_window(params: SignatureParams, now: int) -> int:
    """Check ``created``/``expires`` against ``now``; return the last second it stays valid.

    Accepted while ``created - 60 <= now <= min(created + 300, expires)`` and
    ``created <= expires <= created + 300``.  The returned instant tells the replay cache how
    long the nonce must be remembered.
    """
    created, expires = params.get("created"), params.get("expires")
    if type(created) is not int or type(expires) is not int:
        raise _malformed("created and expires are required integers")
    if expires < created or expires - created > MAX_AGE:
        raise _malformed(f"expires must be within {MAX_AGE} s after created")
    if created - now > MAX_CLOCK_SKEW:
        raise AuthError(
            f"signature created {created - now} s in the future", code="signature_from_future"
        )
    if now - created > MAX_AGE:
        raise AuthError(f"signature is {now - created} s old", code="signature_expired")
    if now > expires:
        raise AuthError("signature has expired", code="signature_expired")
    return min(created + MAX_AGE, expires)


def content_digest(body: bytes) -> str:
    """The RFC 9530 ``Content-Digest`` value ``sha-256=:base64:`` for ``body``."""
    return "sha-256=" + serialize_item(hashlib.sha256(body).digest())


def verify_content_digest(header: str, body: bytes) -> None:
    """Check a ``Content-Digest`` against ``body``; sha-256 is required, sha-512 also checked.

    Other algorithms are ignored, as RFC 9530 §2 asks of recipients.
    """
    try:
        members = parse_dictionary(header)
    except InputError as exc:
        raise AuthError(f"Content-Digest: {exc.message}", code="digest_mismatch") from None
    if "sha-256" not in members:
        raise AuthError("Content-Digest has no sha-256 member", code="digest_missing")
    for name, (value, _params) in members.items():
        if name not in _DIGESTS:
            continue
        expected = _DIGESTS[name](body).digest()
        if not isinstance(value, bytes) or not hmac.compare_digest(value, expected):
            raise AuthError(
                f"Content-Digest {name} does not match the body", code="digest_mismatch"
            )


def create_signature_headers(
    key: SigningKey,
    *,
    keyid: str,
    method: str,
    target: str,
    destination: str,
    body: bytes | None,
    created: int,
    nonce: str,
    lifetime: int = MAX_AGE,
) -> dict[str, str]:
    """The headers that authenticate one request: destination, digest, Signature(-Input).

    ``target`` is the raw request target (path and query as they go on the wire).  A body of
    ``None`` or ``b""`` carries no digest; any other body is digested and covered.
    """
    if len(nonce) < MIN_NONCE_LEN:
        raise InputError(f"nonce must be at least {MIN_NONCE_LEN} characters", field="nonce")
    if not 0 < lifetime <= MAX_AGE:
        raise InputError(f"lifetime must be 1..{MAX_AGE} s", field="lifetime")
    headers = {"Hashfed-Destination": destination}
    if body:
        headers["Content-Digest"] = content_digest(body)
    params = SignatureParams.create(
        BODY_COMPONENTS if body else BASE_COMPONENTS,
        created=created,
        expires=created + lifetime,
        nonce=nonce,
        keyid=keyid,
    )
    lowered = {name.lower(): value for name, value in headers.items()}
    base = signature_base(params, component_values(method.upper(), target, lowered))
    signature = key.sign(base)
    headers["Signature-Input"] = f"{SIGNATURE_LABEL}={params.serialize()}"
    headers["Signature"] = f"{SIGNATURE_LABEL}={serialize_item(signature)}"
    return headers
