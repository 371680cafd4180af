"""A stored procedure that undoes one writer of a group commit on the server when its
deciding statement changed no row (MySQL and MariaDB; nothing on SQLite).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

The writers of a process that commit at the same time share one transaction and one round
trip (session.py), each inside `SAVEPOINT stockade_writer`. A writer whose conditional
UPDATE matched nothing must leave no trace, and the writers after it in the same batch must
still run: `CALL stockade_keep_if_changed(ROW_COUNT())` rolls back to the writer's savepoint
in that case, without stopping the batch or waiting for the client.

Privileges as for 0007: EXECUTE to serve, CREATE ROUTINE and ALTER ROUTINE to migrate.
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

CREATE = """
CREATE PROCEDURE stockade_keep_if_changed(changed BIGINT)
BEGIN
  IF changed <> 1 THEN
    ROLLBACK TO SAVEPOINT stockade_writer;
  END IF;
END
"""


def upgrade() -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    op.execute("DROP PROCEDURE IF EXISTS stockade_keep_if_changed")
    op.execute(CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    op.execute("DROP PROCEDURE IF EXISTS stockade_keep_if_changed")
