"""Store.run_transaction on both backends: all or nothing, visible to the async pool once it
returns, and on SQLite written by a connection with the same durability settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select

from federation.store import Store, open_store
from federation.store.bulk import insert_many
from federation.store.schema import tree_hashes


async def count(store: Store) -> int:
    async with store.read() as conn:
        rows = await conn.execute(select(func.count()).select_from(tree_hashes))
        return int(rows.scalar_one())


async def test_commits_on_return_and_writes_nothing_on_raise(db_url: str) -> None:
    store = await open_store(db_url)

    def write(conn: Connection) -> int:
        insert_many(conn, tree_hashes, [("o", p, bytes([p]) * 32) for p in range(3)])
        return 3

    assert await store.run_transaction(write) == 3
    assert await count(store) == 3

    def half_then_fail(conn: Connection) -> None:
        insert_many(conn, tree_hashes, [("o", 10, b"\x01" * 32)])
        raise RuntimeError("after the first insert")

    with pytest.raises(RuntimeError):
        await store.run_transaction(half_then_fail)
    assert await count(store) == 3  # the first insert of the failed transaction is gone

    def duplicate(conn: Connection) -> None:
        insert_many(conn, tree_hashes, [("o", 20, b"\x02" * 32), ("o", 0, b"\x03" * 32)])

    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        await store.run_transaction(duplicate)
    assert await count(store) == 3
    await store.close()


async def test_sqlite_transactions_are_durable_before_they_return(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/node.db")

    def settings(conn: Connection) -> tuple[object, object]:
        return (
            conn.exec_driver_sql("PRAGMA synchronous").scalar(),
            conn.exec_driver_sql("PRAGMA journal_mode").scalar(),
        )

    assert await store.run_transaction(settings) == (2, "wal")  # 2 = FULL
    await store.close()
