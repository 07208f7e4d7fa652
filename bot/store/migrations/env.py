"""Alembic environment: runs on the connection the Store hands it (see Store.migrate)."""

from alembic import context

from bot.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only via Store.migrate
    raise RuntimeError("run migrations through bot.store.Store.migrate()")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
