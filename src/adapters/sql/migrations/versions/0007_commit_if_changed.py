"""A stored procedure that ends a write batch on the server: COMMIT when its deciding
statement changed one row, else ROLLBACK (MySQL and MariaDB; nothing on SQLite).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

A purchase's batch ends with its conditional UPDATE of the product row. An UPDATE that
waited for that row's lock and then matched nothing (the stock ran out meanwhile) keeps the
lock until its transaction ends (seen on MariaDB 10.11 at READ COMMITTED). When the client
had to send that ROLLBACK, every request queued on the row waited for it, and under a flash
sale's load a client's answer is slow to come: the refusals after a sell-out queued behind
one another for seconds. `CALL stockade_commit_if_changed(n)` ends the transaction in the
same batch either way.

The database user that serves the API needs the EXECUTE privilege on it (`GRANT ALL ON
db.*` includes it); the one that migrates, CREATE ROUTINE and ALTER ROUTINE.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

CREATE = """
CREATE PROCEDURE stockade_commit_if_changed(changed BIGINT)
BEGIN
  IF changed = 1 THEN
    COMMIT;
  ELSE
    ROLLBACK;
  END IF;
END
"""


def upgrade() -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    op.execute("DROP PROCEDURE IF EXISTS stockade_commit_if_changed")
    op.execute(CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    op.execute("DROP PROCEDURE IF EXISTS stockade_commit_if_changed")
