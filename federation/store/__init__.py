"""Storage: the SQLAlchemy 2 async schema and the queries every other layer uses.

SQLite (aiosqlite) is the embedded default; PostgreSQL (asyncpg) runs the same code.  The
schema is owned by Alembic migrations in ``migrations/``; a node refuses to start on a schema
revision it does not know.
"""

from federation.store.engine import Store, open_store

__all__ = ["Store", "open_store"]
