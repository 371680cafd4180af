"""Outbox lease: a task marks its message started, so the relay sends again only what is in doubt.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

`started_at` is set each time a task starts a message (and `retry_at` moved to the end of
its lease); `deliveries` counts those starts; `resent_at` is when the relay last sent the
message again (null: only sent when it was created). The relay reads the most recent start
through `ix_outbox_started`.

Plain ADD COLUMN (nullable, or NOT NULL with a constant default) and CREATE INDEX: on
MySQL 8 and MariaDB 10.6+ InnoDB adds such columns in place (ALGORITHM=INSTANT on MySQL
8.0.12+ and MariaDB 10.3+) and builds the index online, without blocking writers; SQLite
adds the columns with ALTER TABLE ADD COLUMN, no table copy. Existing rows read as never
started, which the relay treats as before: sent again once due.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Ts = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.add_column("outbox", sa.Column("started_at", Ts, nullable=True))
    op.add_column("outbox", sa.Column("deliveries", sa.Integer, nullable=False, server_default="0"))
    op.add_column("outbox", sa.Column("resent_at", Ts, nullable=True))
    op.create_index("ix_outbox_started", "outbox", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_started", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("resent_at")
        batch.drop_column("deliveries")
        batch.drop_column("started_at")
