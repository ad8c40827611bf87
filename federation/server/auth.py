"""Request authentication on the node: who signed this request, and may they?

Implements the verifier side of ``spec/auth.md`` (RFC 9421 + RFC 9530 as profiled by
hashfed): it selects the ``tag="hashfed"`` signature, checks parameters, time window,
covered components, destination binding, the signer's key, the signature, the body digest,
and finally the nonce replay cache.  The nonce is remembered only after everything else
passed, so nobody can burn another signer's nonces with forged requests.

Two registries answer "whose key is this": peers (transport keys from the membership
manifest, each valid for a window) and the node's own clients (keys in node config, with
roles).  The app wires them with :class:`ChainResolver`; key ids must be unique across both.

The aiohttp middleware only *raises* :class:`AuthError` / :class:`ForbiddenError`; the app's
single error middleware turns them into JSON.  Routes read the caller from
``request[PRINCIPAL_KEY]`` and check roles with :func:`require_role`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from yarl import URL

from federation.core.httpsig import (
    ALGORITHM,
    BASE_COMPONENTS,
    DESTINATION_HEADER,
    DIGEST_HEADER,
    MIN_NONCE_LEN,
    REQUIRED_PARAMS,
    SIGNATURE_TAG,
    SignatureParams,
    check_window,
    component_values,
    parse_signature,
    parse_signature_input,
    signature_base,
    verify_content_digest,
)
from federation.core.keys import PublicKey
from federation.errors import (
    AuthError,
    ConfigError,
    ForbiddenError,
    StorageError,
    VerificationError,
)

PrincipalKind = Literal["peer", "client"]

ERROR_CODES = (
    "signature_missing",
    "signature_malformed",
    "tag_mismatch",
    "unsupported_algorithm",
    "signature_from_future",
    "signature_expired",
    "components_missing",
    "digest_missing",
    "wrong_destination",
    "unknown_key",
    "bad_signature",
    "digest_mismatch",
    "replayed_nonce",
    "member_suspended",
    "missing_role",
    "replay_cache_full",
)
"""Every code request authentication can raise; each is documented in spec/auth.md."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    keyid: str
    public_key: PublicKey
    kind: PrincipalKind
    member_id: str | None
    roles: frozenset[str]
    suspended: bool = False
    """The member is suspended at the time the request is verified (it gets 403)."""


class KeyResolver(Protocol):
    """Maps an RFC 9421 ``keyid`` to the principal holding it at time ``at`` (unix seconds)."""

    def resolve(self, keyid: str, at: int) -> Principal | None:
        """The principal, or None if the key is unknown or not valid at ``at``."""
        ...


@dataclass(frozen=True)
class PeerKey:
    """A member's transport key as listed in the membership manifest."""

    keyid: str
    public_key: PublicKey
    member_id: str
    not_before: int
    not_after: int | None
    roles: frozenset[str] = frozenset()
    suspended: bool = False
    """The member's ``status`` is ``suspended`` in the manifest."""
    suspended_at: int | None = None
    """When that suspension takes effect for requests; None: at once (by size alone)."""

    def suspended_by(self, at: int) -> bool:
        """Whether the member is suspended at unix time ``at`` (spec/protocol.md §3.3).

        Judged per request by the verifier's clock, not when the registry was built: a
        suspension dated in the future leaves the member active until then, and one by
        ``suspended_size`` alone (no ``suspended_at``) takes effect at once.
        """
        return self.suspended and (self.suspended_at is None or at >= self.suspended_at)


@dataclass(frozen=True)
class ClientKey:
    """A key of one of this node's own clients (CLI, platform integration), from node config."""

    keyid: str
    public_key: PublicKey
    roles: frozenset[str]


def _index(keys: Iterable[PeerKey | ClientKey]) -> dict[str, PeerKey | ClientKey]:
    result: dict[str, PeerKey | ClientKey] = {}
    for key in keys:
        if key.keyid in result:
            raise ConfigError(f"key id {key.keyid!r} is listed twice", code="duplicate_keyid")
        result[key.keyid] = key
    return result


class PeerKeyRegistry:
    """Peers' transport keys; a key resolves only inside its ``[not_before, not_after)``."""

    def __init__(self, keys: Iterable[PeerKey]) -> None:
        self._keys = {k.keyid: k for k in _index(keys).values() if isinstance(k, PeerKey)}

    def resolve(self, keyid: str, at: int) -> Principal | None:
        key = self._keys.get(keyid)
        if key is None or at < key.not_before:
            return None
        if key.not_after is not None and at >= key.not_after:
            return None
        return Principal(
            keyid, key.public_key, "peer", key.member_id, key.roles, suspended=key.suspended_by(at)
        )


class ClientKeyRegistry:
    """This node's own clients; they act for the node's member id with their listed roles."""

    def __init__(self, member_id: str, keys: Iterable[ClientKey]) -> None:
        self._member_id = member_id
        self._keys = {k.keyid: k for k in _index(keys).values() if isinstance(k, ClientKey)}

    def resolve(self, keyid: str, at: int) -> Principal | None:
        key = self._keys.get(keyid)
        if key is None:
            return None
        return Principal(keyid, key.public_key, "client", self._member_id, key.roles)


class ChainResolver:
    """Asks each resolver in turn; the first that knows the key id answers."""

    def __init__(self, *resolvers: KeyResolver) -> None:
        self._resolvers = resolvers

    def resolve(self, keyid: str, at: int) -> Principal | None:
        for resolver in self._resolvers:
            principal = resolver.resolve(keyid, at)
            if principal is not None:
                return principal
        return None


class NonceCache:
    """Remembers (keyid, nonce) until the signature carrying it could no longer verify.

    Memory is bounded: expired entries are evicted (oldest deadline first) on every insert,
    and when ``max_entries`` still-valid nonces are held the request is refused with a 503
    rather than forgetting a nonce early, which would reopen the replay window.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        if max_entries < 1:
            raise ConfigError("nonce cache needs room for at least one entry")
        self._max = max_entries
        self._until: dict[tuple[str, str], int] = {}
        self._heap: list[tuple[int, str, str]] = []

    def __len__(self) -> int:
        return len(self._until)

    def evict(self, now: int) -> None:
        """Forget every entry whose signature can no longer be valid at ``now``."""
        while self._heap and self._heap[0][0] < now:
            until, keyid, nonce = heapq.heappop(self._heap)
            if self._until.get((keyid, nonce)) == until:
                del self._until[(keyid, nonce)]

    def remember(self, keyid: str, nonce: str, until: int, now: int) -> None:
        """Record a nonce valid through ``until``; raise ``replayed_nonce`` if already seen."""
        self.evict(now)
        if (keyid, nonce) in self._until:
            raise AuthError("nonce was already used with this key", code="replayed_nonce")
        if len(self._until) >= self._max:
            raise StorageError("replay cache is full; retry shortly", code="replay_cache_full")
        self._until[(keyid, nonce)] = until
        heapq.heappush(self._heap, (until, keyid, nonce))


@dataclass(frozen=True)
class RequestView:
    """The parts of a received request that authentication reads."""

    method: str
    target: str
    headers: Mapping[str, str]
    """Lowercased field names; repeated field lines joined with ``", "``."""
    body: bytes


def _select(inputs: Mapping[str, SignatureParams]) -> tuple[str, SignatureParams]:
    """Pick the one hashfed signature by its signed tag (labels are not signed)."""
    ours = [(label, p) for label, p in inputs.items() if p.get("tag") == SIGNATURE_TAG]
    if not ours:
        raise AuthError(f'no signature has tag="{SIGNATURE_TAG}"', code="tag_mismatch")
    if len(ours) > 1:
        raise AuthError("more than one hashfed signature", code="signature_malformed")
    return ours[0]


def _check_params(params: SignatureParams) -> tuple[str, str]:
    names = [name for name, _ in params.params]
    unknown = sorted(set(names) - set(REQUIRED_PARAMS))
    if unknown:
        raise AuthError(f"unsupported signature parameters {unknown}", code="signature_malformed")
    if params.get("alg") != ALGORITHM:
        raise AuthError(f'alg must be "{ALGORITHM}"', code="unsupported_algorithm")
    keyid, nonce = params.get("keyid"), params.get("nonce")
    if not isinstance(keyid, str) or not keyid:
        raise AuthError("keyid is required", code="signature_malformed")
    if not isinstance(nonce, str) or len(nonce) < MIN_NONCE_LEN:
        raise AuthError(
            f"nonce of at least {MIN_NONCE_LEN} characters is required", code="signature_malformed"
        )
    return keyid, nonce


def _check_coverage(params: SignatureParams, view: RequestView) -> None:
    missing = [name for name in BASE_COMPONENTS if name not in params.components]
    if missing:
        raise AuthError(f"signature must cover {missing}", code="components_missing")
    if view.body:
        if DIGEST_HEADER not in view.headers:
            raise AuthError("a request with a body needs Content-Digest", code="digest_missing")
        if DIGEST_HEADER not in params.components:
            raise AuthError("signature must cover content-digest", code="components_missing")


def verify_request(
    view: RequestView, *, resolver: KeyResolver, nonces: NonceCache, destination: str, now: int
) -> Principal:
    """Authenticate one request addressed to member ``destination``; return its signer.

    Raises :class:`AuthError` with the codes listed in ``spec/auth.md``.  Suspension
    is *not* checked here: the principal is returned so callers can say 403, not 401.
    """
    input_text, signature_text = view.headers.get("signature-input"), view.headers.get("signature")
    if not input_text or not signature_text:
        raise AuthError("request is not signed", code="signature_missing")
    label, params = _select(parse_signature_input(input_text))
    signature = parse_signature(signature_text).get(label)
    if signature is None:
        raise AuthError(f"Signature has no member {label!r}", code="signature_malformed")
    keyid, nonce = _check_params(params)
    until = check_window(params, now)
    _check_coverage(params, view)
    if view.headers.get(DESTINATION_HEADER) != destination:
        raise AuthError(f"request is not addressed to {destination}", code="wrong_destination")
    principal = resolver.resolve(keyid, now)
    if principal is None:
        raise AuthError(f"unknown or inactive key {keyid!r}", code="unknown_key")
    base = signature_base(params, component_values(view.method, view.target, view.headers))
    try:
        principal.public_key.verify(base, signature)
    except VerificationError:
        raise AuthError("signature does not verify", code="bad_signature") from None
    if DIGEST_HEADER in params.components:
        verify_content_digest(view.headers[DIGEST_HEADER], view.body)
    nonces.remember(keyid, nonce, until, now)
    return principal


def require_role(principal: Principal, role: str) -> None:
    """Raise 403 unless ``principal`` is an active holder of ``role``."""
    if principal.suspended:
        raise ForbiddenError(f"member {principal.member_id} is suspended", code="member_suspended")
    if role not in principal.roles:
        raise ForbiddenError(f"key {principal.keyid!r} lacks role {role!r}", code="missing_role")


PRINCIPAL_KEY = web.RequestKey("principal", Principal)


def request_view(request: web.Request, body: bytes) -> RequestView:
    """The raw request line and headers of an aiohttp request (nothing decoded)."""
    target = request.raw_path
    if not target.startswith("/"):  # absolute-form request target
        target = URL(target, encoded=True).raw_path_qs
    headers = {
        name.lower(): ", ".join(request.headers.getall(name))
        for name in {key.lower() for key in request.headers}
    }
    return RequestView(request.method, target, headers, body)


def auth_middleware(
    *,
    resolver: KeyResolver,
    nonces: NonceCache,
    destination: str,
    clock: Callable[[], float],
    is_public: Callable[[web.Request], bool],
) -> Middleware:
    """An aiohttp middleware that authenticates every non-public request.

    On success the :class:`Principal` is stored at ``request[PRINCIPAL_KEY]``; suspended
    principals are refused with 403 ``member_suspended``.  Failures are raised, not rendered.
    """

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_public(request):
            return await handler(request)
        body = await request.read()  # cached by aiohttp: handlers can read it again
        principal = verify_request(
            request_view(request, body),
            resolver=resolver,
            nonces=nonces,
            destination=destination,
            now=int(clock()),
        )
        if principal.suspended:
            raise ForbiddenError(
                f"member {principal.member_id} is suspended", code="member_suspended"
            )
        request[PRINCIPAL_KEY] = principal
        return await handler(request)

    return authenticate
