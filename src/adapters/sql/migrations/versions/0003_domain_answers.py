"""Idempotency records and webhook deliveries store domain answers, not HTTP responses.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

`idempotency_keys` keeps the encoded domain result or refusal in `answer`, written in the
transaction of the effect (there is no separate in-flight claim any more). Records of the
old shape held rendered HTTP bodies, which the new code cannot replay as domain values:
they are dropped, so a key first used before the upgrade is treated as new after it
(drain client retries before upgrading). `payment_events.http_status` becomes
`first_outcome`, the outcome its first response gave (202 meant deferred).
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM idempotency_keys")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("status_code")
        batch.drop_column("body")
        batch.drop_column("completed_at")
        batch.add_column(sa.Column("answer", sa.Text, nullable=True))
    with op.batch_alter_table("payment_events") as batch:
        batch.add_column(sa.Column("first_outcome", sa.String(16), nullable=True))
    op.execute("UPDATE payment_events SET first_outcome = CASE WHEN http_status = 202 THEN 'deferred' ELSE outcome END")
    with op.batch_alter_table("payment_events") as batch:
        batch.alter_column("first_outcome", existing_type=sa.String(16), nullable=False)
        batch.drop_column("http_status")


def downgrade() -> None:
    with op.batch_alter_table("payment_events") as batch:
        batch.add_column(sa.Column("http_status", sa.Integer, nullable=True))
    op.execute("UPDATE payment_events SET http_status = CASE WHEN first_outcome = 'deferred' THEN 202 ELSE 200 END")
    with op.batch_alter_table("payment_events") as batch:
        batch.alter_column("http_status", existing_type=sa.Integer, nullable=False)
        batch.drop_column("first_outcome")
    op.execute("DELETE FROM idempotency_keys")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("answer")
        batch.add_column(sa.Column("status_code", sa.Integer, nullable=True))
        batch.add_column(sa.Column("body", sa.Text, nullable=True))
        batch.add_column(sa.Column("completed_at", sa.DateTime, nullable=True))
