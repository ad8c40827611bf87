"""The node's configuration: one TOML file plus environment overrides for secrets and paths.

Every section is a frozen pydantic model with ``extra="forbid"``, so a misspelt key is an error
that names it rather than a silently ignored setting.  Relative paths (key files, the manifest,
a relative SQLite file) resolve against the directory of the config file, so a deployment
directory can be moved as a whole; paths given through the environment resolve against the
current directory, as a shell user expects.

Environment overrides (applied before validation, so they are validated like the file):

=========================  ======================
``HASHFED_DATABASE_URL``   ``database.url``
``HASHFED_LOG_KEY``        ``keys.log_key``
``HASHFED_TRANSPORT_KEY``  ``keys.transport_key``
``HASHFED_MANIFEST``       ``manifest.path``
``HASHFED_LISTEN``         ``node.listen``
=========================  ======================
"""

from __future__ import annotations

import base64
import binascii
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from sqlalchemy.engine import make_url

from federation.core.ids import MemberId
from federation.errors import ConfigError

_MODEL = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

ClientRole = Literal["submit", "match", "admin"]
"""What a node's own client key may do: write entries, query matches, administer the node."""

ENV_OVERRIDES: dict[str, tuple[str, str, bool]] = {
    "HASHFED_DATABASE_URL": ("database", "url", False),
    "HASHFED_LOG_KEY": ("keys", "log_key", True),
    "HASHFED_TRANSPORT_KEY": ("keys", "transport_key", True),
    "HASHFED_MANIFEST": ("manifest", "path", True),
    "HASHFED_LISTEN": ("node", "listen", False),
}
"""Environment variable -> (section, key, is a path)."""


def split_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) into its parts; raises ValueError."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isascii() or not port_text.isdigit():
        raise ValueError("listen must be host:port, e.g. 127.0.0.1:8441 or [::1]:8441")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 listen address needs brackets, e.g. [::1]:8441")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError("listen port must be 0..65535")
    return host, port


def _check_listen(value: str) -> str:
    split_listen(value)
    return value


class NodeSection(BaseModel):
    """``[node]``: who this node is and where it listens."""

    model_config = _MODEL

    member_id: MemberId
    """This member's id; it must be in the manifest."""
    listen: Annotated[str, AfterValidator(_check_listen)] = "127.0.0.1:8441"
    """``host:port`` to bind (port 0 picks a free port, printed at start)."""
    shutdown_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    """Seconds to let in-flight requests finish on SIGTERM before closing connections."""

    @property
    def host(self) -> str:
        """Host part of ``listen``."""
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        """Port part of ``listen``."""
        return split_listen(self.listen)[1]


class DatabaseSection(BaseModel):
    """``[database]``: where the log and mirrors are stored."""

    model_config = _MODEL

    url: Annotated[str, Field(min_length=1)]
    """``sqlite:///relative/or/absolute.db`` or ``postgresql://user@host/db``."""


class KeysSection(BaseModel):
    """``[keys]``: the member's private keys (0600 files) and its transport key id."""

    model_config = _MODEL

    log_key: Path
    """C2SP private key file signing checkpoints and entries; its name is the log origin."""
    transport_key: Path
    """Private key file signing outbound peer requests (RFC 9421)."""
    transport_key_id: Annotated[str, Field(min_length=1, max_length=128)]
    """The manifest's key id for ``transport_key``."""
    witness_key: Path | None = None
    """Cosignature key file (type 0x04) of a ``witness`` member; its public key must be the
    manifest's ``witness_vkey`` (spec/sync.md §9)."""


class ManifestSection(BaseModel):
    """``[manifest]``: the signed membership manifest the operator pinned."""

    model_config = _MODEL

    path: Path
    """JSON file of the signed manifest."""


class ClientConfig(BaseModel):
    """``[[clients]]``: one of the member's own clients (CLI, upload pipeline)."""

    model_config = _MODEL

    key_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
    """RFC 9421 ``keyid`` the client signs with; unique across clients and the manifest."""
    public_key: str
    """Ed25519 public key, standard base64 of 32 bytes."""
    roles: Annotated[tuple[ClientRole, ...], Field(min_length=1)]
    """What the client may do: ``submit``, ``match``, ``admin``."""

    @field_validator("public_key")
    @classmethod
    def _key(cls, value: str) -> str:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("public_key must be standard base64") from None
        if len(raw) != 32:
            raise ValueError("public_key must be 32 bytes (an Ed25519 public key)")
        return value

    def raw_public_key(self) -> bytes:
        """The 32 key bytes."""
        return base64.b64decode(self.public_key)


class LimitsSection(BaseModel):
    """``[limits]``: bounds on what one request may ask of the node."""

    model_config = _MODEL

    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 4 * 1024 * 1024
    """Largest request body accepted (bigger ones get 413 ``body_too_large``)."""
    max_batch: Annotated[int, Field(ge=1, le=10_000)] = 1000
    """Most entries in one submissions/retractions/opinions request."""


class SyncSection(BaseModel):
    """``[sync]``: how this node replicates other members' logs (spec/sync.md §4)."""

    model_config = _MODEL

    enabled: bool = True
    """Pull other members' logs and ring peers' doorbells (off only for isolated tests)."""
    poll_interval: Annotated[float, Field(gt=0, le=3600)] = 30.0
    """Seconds between polls of each origin; doorbells trigger pulls sooner."""
    page_size: Annotated[int, Field(ge=1, le=1000)] = 1000
    """Leaves asked for per ``entries`` request."""
    chunk_size: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    """Leaves verified and applied per transaction when catching up (bounds memory)."""
    request_timeout: Annotated[float, Field(gt=0, le=600)] = 30.0
    """Total seconds one request to a peer may take."""
    connect_timeout: Annotated[float, Field(gt=0, le=120)] = 5.0
    """Seconds to establish a connection to a peer."""
    manifest_poll_interval: Annotated[float, Field(gt=0, le=86400)] = 60.0
    """Seconds between polls of peers' ``GET /v1/manifest`` for a newer version (§10)."""


class AlertsSection(BaseModel):
    """``[alerts]``: delivery of retroactive alerts to the platform's webhook (spec/sync.md §11)."""

    model_config = _MODEL

    webhook_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] | None = None
    """Where alerts are POSTed as signed JSON; absent = alerts are only listed by the node."""
    webhook_key: Path | None = Field(default=None, validate_default=True)
    """Private key file signing webhook requests (RFC 9421); required with ``webhook_url``."""
    webhook_key_id: Annotated[str, Field(min_length=1, max_length=128)] = "alerts"
    """RFC 9421 ``keyid`` the webhook receiver knows the key by."""
    retry_base: Annotated[float, Field(gt=0, le=3600)] = 2.0
    """Seconds before the first retry; each later retry waits twice as long."""
    retry_max: Annotated[float, Field(gt=0, le=86400)] = 600.0
    """Longest wait between two attempts."""
    timeout: Annotated[float, Field(gt=0, le=120)] = 10.0
    """Seconds one delivery attempt may take."""
    poll_interval: Annotated[float, Field(gt=0, le=3600)] = 5.0
    """Seconds between scans for due alerts when nothing pokes the sender."""

    @field_validator("webhook_key")
    @classmethod
    def _key_with_url(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None and info.data.get("webhook_url") is not None:
            raise ValueError("webhook_url needs webhook_key (the key that signs alerts)")
        return value


class NodeConfig(BaseModel):
    """The whole node configuration (one TOML file)."""

    model_config = _MODEL

    node: NodeSection
    """``[node]``."""
    database: DatabaseSection
    """``[database]``."""
    keys: KeysSection
    """``[keys]``."""
    manifest: ManifestSection
    """``[manifest]``."""
    clients: tuple[ClientConfig, ...] = ()
    """``[[clients]]``; key ids must be unique."""
    limits: LimitsSection = LimitsSection()
    """``[limits]``."""
    sync: SyncSection = SyncSection()
    """``[sync]``."""
    alerts: AlertsSection = AlertsSection()
    """``[alerts]``."""

    @field_validator("clients")
    @classmethod
    def _unique_clients(cls, value: tuple[ClientConfig, ...]) -> tuple[ClientConfig, ...]:
        seen: set[str] = set()
        for client in value:
            if client.key_id in seen:
                raise ValueError(f"client key_id {client.key_id!r} appears more than once")
            seen.add(client.key_id)
        return value


_PATH_KEYS: dict[str, tuple[str, ...]] = {
    "keys": ("log_key", "transport_key", "witness_key"),
    "manifest": ("path",),
    "alerts": ("webhook_key",),
}
"""Keys holding file paths, which resolve against the config file's directory."""


def _resolve_sqlite(url: str, base: Path) -> str:
    """Make a relative SQLite file path absolute against ``base``; leave anything else."""
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - the store reports bad URLs with their own message
        return url
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return url
    if Path(database).is_absolute():
        return url
    return parsed.set(database=str(base / database)).render_as_string(hide_password=False)


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def parse_config(
    data: Mapping[str, Any], *, base: Path, env: Mapping[str, str] | None = None
) -> NodeConfig:
    """Validate config data (already parsed TOML) with overrides from ``env``.

    ``base`` is the directory relative paths in ``data`` resolve against.  Raises
    :class:`ConfigError` whose ``field`` is the dotted TOML key at fault.
    """
    raw: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    for section in ("keys", "manifest", "alerts"):
        if isinstance(raw.get(section), dict):
            for key, value in raw[section].items():
                if key in _PATH_KEYS.get(section, ()) and isinstance(value, str):
                    raw[section][key] = str(base / value)
    db = raw.get("database")
    if isinstance(db, dict) and isinstance(db.get("url"), str):
        db["url"] = _resolve_sqlite(db["url"], base)
    for var, (section, key, is_path) in ENV_OVERRIDES.items():
        value = (env or {}).get(var)
        if value is None:
            continue
        target = raw.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"[{section}] must be a table", field=section)
        if is_path:
            value = str(Path(value).absolute())
        elif section == "database":
            value = _resolve_sqlite(value, Path.cwd())
        target[key] = value
    try:
        return NodeConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = _field(first["loc"])
        where = f"{field}: " if field else ""
        raise ConfigError(
            f"invalid config: {where}{first['msg']}", code="invalid_config", field=field or None
        ) from None


def load_config(path: Path, env: Mapping[str, str] | None = None) -> NodeConfig:
    """Read and validate the TOML file at ``path``; ``env`` defaults to ``os.environ``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror or exc}", code="config_unreadable"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", code="invalid_toml") from None
    return parse_config(data, base=path.resolve().parent, env=os.environ if env is None else env)
