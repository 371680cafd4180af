"""Initial schema: products, holds, orders, payment events, idempotency keys, event log, outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-21

Written out in full (not metadata.create_all) so that later changes to tables.py never
rewrite history.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Ts = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def money(precision: int):
    return sa.Numeric(precision, 2).with_variant(sa.String(40), "sqlite")


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("price", money(15), nullable=False),
        sa.Column("stock", sa.BigInteger, nullable=False),
        sa.Column("reserved", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("updated_at", Ts, nullable=False),
        sa.Column("deleted_at", Ts, nullable=True),
        sa.CheckConstraint("stock >= 0", name="ck_products_stock_nonnegative"),
        sa.CheckConstraint("reserved >= 0", name="ck_products_reserved_nonnegative"),
        sa.CheckConstraint("stock >= reserved", name="ck_products_available_nonnegative"),
    )
    op.create_table(
        "holds",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("product_id", sa.BigInteger, sa.ForeignKey("products.id", name="fk_holds_product"), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires_at", Ts, nullable=False),
        sa.Column("order_id", sa.BigInteger, nullable=True),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("updated_at", Ts, nullable=False),
        sa.CheckConstraint("quantity > 0", name="ck_holds_quantity_positive"),
    )
    op.create_index("ix_holds_status_expires", "holds", ["status", "expires_at"])
    op.create_index("ix_holds_product_status_expires", "holds", ["product_id", "status", "expires_at"])
    op.create_table(
        "orders",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("product_id", sa.BigInteger, sa.ForeignKey("products.id", name="fk_orders_product"), nullable=False),
        sa.Column("hold_id", sa.BigInteger, sa.ForeignKey("holds.id", name="fk_orders_hold"), nullable=True),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("total_price", money(30), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("payment_due_at", Ts, nullable=True),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("updated_at", Ts, nullable=False),
        sa.CheckConstraint("quantity > 0", name="ck_orders_quantity_positive"),
        sa.UniqueConstraint("hold_id", name="uq_orders_hold"),
    )
    op.create_index("ix_orders_status_due", "orders", ["status", "payment_due_at"])
    op.create_index("ix_orders_product_status_due", "orders", ["product_id", "status", "payment_due_at"])
    op.create_table(
        "payment_events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("order_id", sa.BigInteger, nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("http_status", sa.Integer, nullable=False),
        sa.Column("response_status", sa.String(16), nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("applied_at", Ts, nullable=True),
        sa.UniqueConstraint("key_hash", name="uq_payment_events_key"),
    )
    op.create_index("ix_payment_events_outcome_order", "payment_events", ["outcome", "order_id"])
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(64), primary_key=True),
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("body", sa.Text, nullable=True),
        sa.Column("claimed_at", Ts, nullable=False),
        sa.Column("completed_at", Ts, nullable=True),
    )
    op.create_index("ix_idempotency_keys_claimed", "idempotency_keys", ["claimed_at"])
    op.create_table(
        "event_log",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("created_at", Ts, nullable=False),
    )
    op.create_index("ix_event_log_event_id", "event_log", ["event", "id"])
    op.create_table(
        "outbox",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("task", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("retry_at", Ts, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completed_at", Ts, nullable=True),
    )
    op.create_index("ix_outbox_pending", "outbox", ["completed_at", "retry_at"])


def downgrade() -> None:
    for table in ("outbox", "event_log", "idempotency_keys", "payment_events", "orders", "holds", "products"):
        op.drop_table(table)
