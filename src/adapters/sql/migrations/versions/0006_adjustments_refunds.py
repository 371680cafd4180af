"""Refunds on orders and the stock adjustment trail (cancel, refund and adjust stock).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

`orders.refund_status` is null, `required` (a cancelled order whose payment was taken) or
`refunded`. `stock_adjustments` keeps one row per change of a product's stock by a delta
(and per `PUT` that sets it, with reason `set`), read newest first per product through
`ix_stock_adjustments_product_id`. `ix_orders_refund_status_id` serves `GET /api/orders?refund_status=`
as the other filters' indexes (0005) serve theirs.

A nullable ADD COLUMN (in place, ALGORITHM=INSTANT, on MySQL 8.0.12+ and MariaDB 10.3+;
ALTER TABLE ADD COLUMN on SQLite, no table copy) and a new table: nothing existing is
rebuilt or blocked. Existing orders read as owing no refund.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Ts = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("orders", sa.Column("refund_status", sa.String(16), nullable=True))
    op.create_index("ix_orders_refund_status_id", "orders", ["refund_status", "id"])
    op.create_table(
        "stock_adjustments",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("product_id", sa.BigInteger, nullable=False),
        sa.Column("delta", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.String(255), nullable=False),
        sa.Column("stock_after", sa.BigInteger, nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.CheckConstraint("delta <> 0", name="ck_stock_adjustments_delta_nonzero"),
        sa.CheckConstraint("stock_after >= 0", name="ck_stock_adjustments_stock_after_nonnegative"),
    )
    op.create_index("ix_stock_adjustments_product_id", "stock_adjustments", ["product_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_stock_adjustments_product_id", table_name="stock_adjustments")
    op.drop_table("stock_adjustments")
    op.drop_index("ix_orders_refund_status_id", table_name="orders")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("refund_status")
