"""Many-row INSERTs handed straight to the driver's ``executemany``.

The log writer stores a few hundred rows per append (entries and tree hashes).  Through
``conn.execute(table.insert(), [dict, ...])`` SQLAlchemy builds and type-processes every
parameter of every row in Python, which cost more than the database's own work; here the
statement is compiled once per dialect and the rows go to the driver as plain tuples.  The
values must already be what the driver takes (``bytes`` for binary columns, ``int``, ``str``,
``None``), which is what our rows hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.engine import Dialect

_SQL: dict[tuple[str, str, str], str] = {}


def columns(table: Table) -> tuple[str, ...]:
    """The column names of ``table`` in order: the order :func:`insert_many` rows follow."""
    return tuple(c.name for c in table.columns)


def _insert_sql(dialect: Dialect, table: Table) -> str:
    key = (dialect.name, str(dialect.paramstyle), table.name)
    sql = _SQL.get(key)
    if sql is None:
        compiled = table.insert().compile(dialect=dialect, column_keys=list(columns(table)))
        order = tuple(compiled.positiontup or ())
        if order != columns(table):  # pragma: no cover - a dialect we do not run
            raise RuntimeError(f"INSERT into {table.name} binds {order}, not the column order")
        sql = _SQL[key] = str(compiled)
    return sql


def insert_many(conn: Connection, table: Table, rows: Sequence[Sequence[Any]]) -> None:
    """INSERT ``rows`` (tuples in :func:`columns` order) into ``table`` in one executemany.

    Synchronous: inside :meth:`federation.store.Store.run_transaction` or ``run_sync``.
    """
    if rows:
        conn.exec_driver_sql(_insert_sql(conn.dialect, table), list(rows))
