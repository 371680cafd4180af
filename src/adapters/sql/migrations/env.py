"""Alembic environment: online migrations on the connection given by stockade.adapters.sql.migrate."""

from alembic import context

from stockade.adapters.sql.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
