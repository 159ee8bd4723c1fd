"""Alembic environment: always run programmatically with a connection handed in by
gatehouse.store.migrate (which owns the async engine, driver choice and locking)."""
from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `gatehouse migrate`, not the alembic command")

context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
