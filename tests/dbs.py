"""Database URLs for tests: a fresh SQLite file, or a fresh PostgreSQL database.

PostgreSQL is the server at 127.0.0.1:5432 (trust auth) that this machine kind and CI run;
where none answers, the PostgreSQL variants skip with the reason.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

PG_HOST = os.environ.get("HASHFED_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("HASHFED_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("HASHFED_TEST_PG_USER", "postgres")


def postgres_unavailable_reason() -> str | None:
    """None when a PostgreSQL server answers at PG_HOST:PG_PORT, else why not."""
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            pass
    except OSError as exc:
        return f"no PostgreSQL server answers at {PG_HOST}:{PG_PORT} ({exc})"
    return None


async def create_pg_database() -> str:
    """Create an empty uniquely named database; returns its URL."""
    import asyncpg

    name = f"hashfed_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


async def drop_pg_database(url: str) -> None:
    """Drop a database made by create_pg_database."""
    import asyncpg

    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def sqlite_url(directory: Path) -> str:
    """URL of a new SQLite file in ``directory``."""
    return f"sqlite:///{directory / 'node.db'}"
