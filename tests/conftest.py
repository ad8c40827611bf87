"""Shared fixtures: the ../shared test data and both database backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests import dbs

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def shared() -> Path:
    """The read-only ../shared directory (vectors, images); skips where it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (test vectors and images live there)")
    return SHARED


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh empty database of each backend."""
    if request.param == "sqlite":
        yield dbs.sqlite_url(tmp_path)
        return
    reason = dbs.postgres_unavailable_reason()
    if reason:
        pytest.skip(reason)
    url = await dbs.create_pg_database()
    try:
        yield url
    finally:
        await dbs.drop_pg_database(url)
