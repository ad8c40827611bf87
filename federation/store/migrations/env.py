"""Alembic environment for hashfed.

hashfed runs migrations itself (``federation.store.engine``) on the connection it already has,
passed in ``config.attributes["connection"]``.  Operators can also run the ``alembic`` command
with ``-x url=...`` (a synchronous URL) against this directory.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from federation.store.schema import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is not None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    engine = create_engine(str(url))
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
