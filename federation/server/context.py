"""What a running node's routes need, passed explicitly instead of module globals.

:class:`NodeContext` holds the open resources (store, log writer), the verified manifest,
the match service and the clock.  ``create_app`` stores it at ``app[NODE]``; every route reads
``request.app[NODE]``.  :func:`build_resolver` turns the manifest's transport keys and the
config's client keys into the key resolver request authentication uses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import structlog
from aiohttp import web

from federation.config import NodeConfig
from federation.core.entries import SignedEntry
from federation.core.keys import KeyType, PublicKey
from federation.core.manifest import Member, SignedManifest
from federation.errors import ConfigError
from federation.log.writer import LogWriter
from federation.server.auth import (
    ChainResolver,
    ClientKey,
    ClientKeyRegistry,
    KeyResolver,
    NonceCache,
    PeerKey,
    PeerKeyRegistry,
    Principal,
)
from federation.server.metrics import Metrics
from federation.store import Store
from federation.sync.manifest_updates import ManifestGossip, ManifestKeeper
from federation.sync.service import SyncService

if TYPE_CHECKING:
    from federation.matching.webhook import AlertSender
    from federation.sync.witness import Witness

log = structlog.get_logger(__name__)

MatchItem = tuple[str, int, SignedEntry]
"""(log origin, index, signed entry) of one entry that became part of a log held here."""


class Matcher(Protocol):
    """The match service as the node uses it (implemented in ``federation.matching``).

    ``on_entries`` may be sync or async; the node awaits it when it returns an awaitable.
    """

    @property
    def ready(self) -> bool:
        """True once the index holds every stored entry (``/readyz`` is 503 until then)."""
        ...

    def load(self, store: Store) -> Awaitable[None]:
        """Build the index from storage (runs in the background after the node starts)."""
        ...

    def on_entries(self, items: Sequence[MatchItem]) -> object:
        """Index entries just appended, so they are matchable at once."""
        ...

    def stats(self) -> Mapping[str, int]:
        """Index sizes for ``/v1/status`` and ``/metrics``."""
        ...


@dataclass(frozen=True)
class NodeContext:
    """Everything the routes of one node use.  Built once at start-up by ``federation.node``."""

    config: NodeConfig
    store: Store
    writer: LogWriter
    manifests: ManifestKeeper
    """Holds the verified manifest in force; it changes when a newer version is accepted."""
    matcher: Matcher | None
    """The match service; None when the node runs without one (then it is ready at once)."""
    clock: Callable[[], float]
    """Unix seconds; injected so tests can move time."""
    resolver: KeyResolver
    """Who signed a request: the manifest's transport keys, then the config's client keys."""
    sync: SyncService | None = None
    """Replication (peer clients, replicator, doorbell); None when the node runs without it."""
    metrics: Metrics = field(default_factory=Metrics)
    nonces: NonceCache = field(default_factory=NonceCache)
    witness: Witness | None = None
    """The witness service, when this member is a witness with a ``keys.witness_key``."""
    gossip: ManifestGossip | None = None
    """Manifest polling and pushing to peers; None without replication."""
    alerts: AlertSender | None = None
    """Webhook delivery of retroactive alerts; None without ``[alerts] webhook_url``."""

    @property
    def manifest(self) -> SignedManifest:
        """The verified manifest in force."""
        return self.manifests.current

    @property
    def member(self) -> Member:
        """This node's member entry in the manifest in force."""
        member = self.manifest.manifest.member(self.config.node.member_id)
        if member is None:  # an accepted update may drop us; routes then refuse
            raise ConfigError(f"member {self.config.node.member_id!r} is not in the manifest")
        return member


NODE: web.AppKey[NodeContext] = web.AppKey("node", NodeContext)
"""Where ``create_app`` stores the context on the application."""


class ManifestResolver:
    """The key resolver of the manifest in force: rebuilt whenever a new version is accepted,
    so suspensions, new members and rotated (added or removed) transport keys apply to the
    next request.  Whether a suspension has taken effect is judged by each request's clock
    (``suspended_at``), not here."""

    def __init__(self, config: NodeConfig, manifest: SignedManifest) -> None:
        self._config = config
        self._inner = build_resolver(config, manifest)

    def update(self, manifest: SignedManifest) -> None:
        """Resolve against ``manifest`` from now on.

        A version that lists a transport key id one of our clients also uses is refused at
        start (``duplicate_keyid``); arriving while we run it must not stop authentication,
        so the clashing peer keys are left out (logged) until the operator renames the client
        key and restarts.  Our own clients keep working meanwhile.
        """
        self._inner = build_resolver(self._config, manifest, strict=False)

    def resolve(self, keyid: str, at: int) -> Principal | None:
        return self._inner.resolve(keyid, at)


def build_resolver(
    config: NodeConfig, manifest: SignedManifest, *, strict: bool = True
) -> ChainResolver:
    """Peers from the manifest first (roles = manifest roles), then this node's own clients.

    A suspended member's keys carry its ``suspended_at``, so a suspension dated in the future
    refuses its requests only from that moment on (spec/protocol.md §3.3); one by
    ``suspended_size`` alone refuses them at once.

    Key ids must be unique across both, or one could impersonate the other; that is refused
    here as a configuration error rather than resolved by order — or, with ``strict`` off
    (a manifest update at run time), the clashing peer keys are left out and logged.
    """
    peer_keys: list[PeerKey] = []
    for member in manifest.manifest.members:
        for key in member.transport_keys:
            peer_keys.append(
                PeerKey(
                    keyid=key.key_id,
                    public_key=key.public(),
                    member_id=member.id,
                    not_before=key.not_before,
                    not_after=key.not_after,
                    roles=frozenset(str(role) for role in member.roles),
                    suspended=member.status == "suspended",
                    suspended_at=member.suspended_at,
                )
            )
    clients = [
        ClientKey(
            keyid=c.key_id,
            public_key=PublicKey.from_raw(c.key_id, KeyType.ED25519, c.raw_public_key()),
            roles=frozenset(c.roles),
        )
        for c in config.clients
    ]
    clash = {k.keyid for k in peer_keys} & {c.keyid for c in clients}
    if clash and not strict:
        log.error("manifest_keyid_clash", keyids=sorted(clash), version=manifest.manifest.version)
        peer_keys = [k for k in peer_keys if k.keyid not in clash]
    elif clash:
        raise ConfigError(
            f"client key ids {sorted(clash)} are also transport key ids in the manifest",
            code="duplicate_keyid",
            field="clients",
        )
    return ChainResolver(
        PeerKeyRegistry(peer_keys), ClientKeyRegistry(config.node.member_id, clients)
    )
