"""Alembic environment: runs on the connection `pipeline.store.db.upgrade` hands over."""

from alembic import context
from sqlalchemy import text

from pipeline.store.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # Several workers may start at once: one migrates, the others wait and then find nothing to do.
        connection.execute(text("SELECT pg_advisory_xact_lock(7414022)"))
    context.run_migrations()
