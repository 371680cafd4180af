"""Alembic environment: online migrations on the URL given by stockade.adapters.sql.migrate."""

from alembic import context
from sqlalchemy import create_engine, pool

from stockade.adapters.sql.tables import metadata

config = context.config
url = config.get_main_option("sqlalchemy.url")
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
