"""Opening the database: engine, durability settings, and schema migrations.

SQLite runs in WAL mode with ``synchronous=FULL`` so that a committed transaction survives a
crash or power loss before we acknowledge the request that caused it (``NORMAL`` in WAL mode
may lose the last commits).  Foreign keys are switched on.  PostgreSQL needs no settings: a
commit is durable by default.

On open we run Alembic migrations up to head on the same connection.  A database whose
revision this version of hashfed does not know (written by a newer version) is refused rather
than guessed at.

:meth:`Store.run_transaction` runs a synchronous function as one transaction.  The log writer
uses it: on SQLite, aiosqlite moves every statement (and every cursor open, fetch and close)
to its thread and back, and those hops cost more than the statements themselves, so there the
whole function runs on one writer thread over its own connection (same pragmas): one hop per
transaction.  On PostgreSQL it runs on an async connection via ``run_sync``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from federation.errors import ConfigError, StorageError

MIGRATIONS = Path(__file__).with_name("migrations")
T = TypeVar("T")


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
    _writer: _SqliteWriter | None = field(default=None, repr=False)

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

    async def run_transaction(self, fn: Callable[[Connection], T]) -> T:
        """``fn(conn)`` as one transaction: committed if it returns, rolled back if it raises.

        ``fn`` is synchronous and may run on another thread (see module docstring); it must
        not touch the event loop.  Once this returns, the transaction is durable.
        """
        if self._writer is not None:
            return await self._writer.run(fn)
        async with self.engine.begin() as conn:
            return await conn.run_sync(fn)

    async def close(self) -> None:
        """Dispose of the pool; outstanding transactions have finished by now."""
        if self._writer is not None:
            self._writer.close()
        await self.engine.dispose()


class _SqliteWriter:
    """One synchronous SQLite connection on one thread, for :meth:`Store.run_transaction`."""

    def __init__(self, url: URL) -> None:
        self._engine: Engine = create_engine(url, pool_size=1, max_overflow=0)
        event.listen(self._engine, "connect", _sqlite_pragmas)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")

    def _transaction(self, fn: Callable[[Connection], T]) -> T:
        with self._engine.begin() as conn:
            return fn(conn)

    async def run(self, fn: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._transaction, fn)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self._engine.dispose()


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
    store = Store(engine, backend, _sqlite_writer(make_url(async_url)))
    try:
        async with engine.begin() as conn:
            if migrate:
                await conn.run_sync(_check_and_upgrade)
    except StorageError:
        await store.close()
        raise
    except OSError as exc:
        await store.close()
        raise StorageError(f"cannot open database: {exc}", code="database_unavailable") from None
    return store


def _sqlite_writer(url: URL) -> _SqliteWriter | None:
    """The writer thread of a SQLite file database (an in-memory one is per connection, so
    it has none and writes through the async pool)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.query.get("mode") == "memory":
        return None
    return _SqliteWriter(url.set(drivername="sqlite+pysqlite"))
