"""Opening the database: engine, durability settings, and schema migrations.

SQLite runs in WAL mode with ``synchronous=FULL`` so that a committed transaction survives a
crash or power loss before we acknowledge the request that caused it (``NORMAL`` in WAL mode
may lose the last commits).  Foreign keys are switched on.  PostgreSQL needs no settings: a
commit is durable by default.

On open we run Alembic migrations up to head on the same connection.  A database whose
revision this version of hashfed does not know (written by a newer version) is refused rather
than guessed at.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from federation.errors import ConfigError, StorageError

MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _check_and_upgrade(connection: Connection) -> str:
    """Refuse unknown revisions, then upgrade to head.  Returns the head revision."""
    from alembic import command

    cfg = _alembic_config(connection)
    script = ScriptDirectory.from_config(cfg)
    current = MigrationContext.configure(connection).get_current_revision()
    if current is not None:
        try:
            script.get_revision(current)
        except CommandError:
            raise StorageError(
                f"database schema revision {current!r} is unknown to this hashfed version;"
                " refusing to start (was it written by a newer version?)",
                code="unknown_schema",
            ) from None
    command.upgrade(cfg, "head")
    head = script.get_current_head()
    assert head is not None
    return head


def normalise_url(url: str) -> str:
    """Accept plain ``sqlite:///`` and ``postgresql://`` URLs and pick the async drivers."""
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError(f"database URL {url!r} is not valid", field="database.url") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    else:
        raise ConfigError(
            f"unsupported database backend {backend!r}; use sqlite or postgresql",
            field="database.url",
        )
    return parsed.render_as_string(hide_password=False)


@dataclass
class Store:
    """An open database.  ``transaction()`` is the only way to touch it."""

    engine: AsyncEngine
    backend: str

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One atomic unit: committed on normal exit, rolled back on any exception."""
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (no commit needed)."""
        async with self.engine.connect() as conn:
            yield conn

    async def close(self) -> None:
        """Dispose of the pool; outstanding transactions have finished by now."""
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


async def open_store(url: str, *, migrate: bool = True) -> Store:
    """Open (creating if needed) and migrate the database at ``url``."""
    async_url = normalise_url(url)
    backend = make_url(async_url).get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend == "postgresql":
        kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
    engine = create_async_engine(async_url, **kwargs)
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    store = Store(engine, backend)
    try:
        async with engine.begin() as conn:
            if migrate:
                await conn.run_sync(_check_and_upgrade)
    except StorageError:
        await engine.dispose()
        raise
    except OSError as exc:
        await engine.dispose()
        raise StorageError(f"cannot open database: {exc}", code="database_unavailable") from None
    return store
