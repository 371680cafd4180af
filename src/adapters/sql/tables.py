"""The schema as SQLAlchemy Core tables; Alembic migrations create it, these read and write it.

The CHECK constraints are the last line of defence: even a bug in our SQL cannot make
stock, reserved or available negative (MySQL 8.0.16+ and MariaDB 10.2+ enforce them).
"""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

metadata = sa.MetaData()

#: BIGINT ids on MySQL; INTEGER PRIMARY KEY on SQLite, the only type it auto-increments.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: Microsecond timestamps everywhere (MySQL's DATETIME defaults to whole seconds).
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


#: Customer ids compare exactly ("Ann" is not "ann"), whatever the server's default collation.
CustomerId = sa.String(64).with_variant(mysql.VARCHAR(64, charset="ascii", collation="ascii_bin"), "mysql", "mariadb")


class Money(sa.types.TypeDecorator):
    """DECIMAL on MySQL; exact text on SQLite, whose NUMERIC would round through float."""

    impl = sa.Numeric(30, 2)
    cache_ok = True

    def __init__(self, precision: int = 30) -> None:
        super().__init__()
        self.precision = precision

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(40))
        return dialect.type_descriptor(sa.Numeric(self.precision, 2))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        return None if value is None else Decimal(value)


products = sa.Table(
    "products",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("price", Money(15), nullable=False),
    sa.Column("stock", sa.BigInteger, nullable=False),
    sa.Column("reserved", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("deleted_at", Timestamp, nullable=True),
    sa.Column("max_per_customer", sa.Integer, nullable=True),  # migration 0005; null: no limit
    sa.CheckConstraint("stock >= 0", name="ck_products_stock_nonnegative"),
    sa.CheckConstraint("reserved >= 0", name="ck_products_reserved_nonnegative"),
    sa.CheckConstraint("stock >= reserved", name="ck_products_available_nonnegative"),
)

holds = sa.Table(
    "holds",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("product_id", sa.BigInteger, nullable=False),  # no FK: see migration 0002
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Column("order_id", sa.BigInteger, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("customer_id", CustomerId, nullable=True),
    sa.CheckConstraint("quantity > 0", name="ck_holds_quantity_positive"),
    sa.Index("ix_holds_status_expires", "status", "expires_at"),
    sa.Index("ix_holds_product_status_expires", "product_id", "status", "expires_at"),
    # GET /api/holds: each filter walks its index in id order (migration 0005)
    sa.Index("ix_holds_status_id", "status", "id"),
    sa.Index("ix_holds_product_id", "product_id", "id"),
    sa.Index("ix_holds_customer_id", "customer_id", "id"),
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("product_id", sa.BigInteger, nullable=False),  # no FK: see migration 0002
    sa.Column("hold_id", sa.BigInteger, sa.ForeignKey("holds.id", name="fk_orders_hold"), nullable=True),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("total_price", Money(30), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("payment_due_at", Timestamp, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("customer_id", CustomerId, nullable=True),
    # migration 0006: null, "required" or "refunded" (a cancelled order whose payment was taken)
    sa.Column("refund_status", sa.String(16), nullable=True),
    sa.CheckConstraint("quantity > 0", name="ck_orders_quantity_positive"),
    # one order per hold, whatever races: the second insert fails on this index
    sa.UniqueConstraint("hold_id", name="uq_orders_hold"),
    sa.Index("ix_orders_status_due", "status", "payment_due_at"),
    sa.Index("ix_orders_product_status_due", "product_id", "status", "payment_due_at"),
    # GET /api/orders: each filter walks its index in id order (migration 0005)
    sa.Index("ix_orders_status_id", "status", "id"),
    sa.Index("ix_orders_product_id", "product_id", "id"),
    sa.Index("ix_orders_customer_id", "customer_id", "id"),
    sa.Index("ix_orders_refund_status_id", "refund_status", "id"),
)

#: Each customer's claim on each product (contract section 8): the units of their active
#: holds and of their orders in created, pending, paid or processed. One row per pair, so one
#: conditional UPDATE decides a claim, as one decides stock.
customer_claims = sa.Table(
    "customer_claims",
    metadata,
    sa.Column("product_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("customer_id", CustomerId, primary_key=True),
    sa.Column("claimed", sa.BigInteger, nullable=False, server_default="0"),
    sa.CheckConstraint("claimed >= 0", name="ck_customer_claims_claimed_nonnegative"),
)

payment_events = sa.Table(
    "payment_events",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    # sha256 of the key: exact (case-sensitive) uniqueness whatever the collation
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=False),
    sa.Column("order_id", sa.BigInteger, nullable=False),
    sa.Column("result", sa.String(16), nullable=False),
    sa.Column("fingerprint", sa.String(128), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("first_outcome", sa.String(16), nullable=False),
    sa.Column("response_status", sa.String(16), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("applied_at", Timestamp, nullable=True),
    sa.UniqueConstraint("key_hash", name="uq_payment_events_key"),
    sa.Index("ix_payment_events_outcome_order", "outcome", "order_id"),
)

stock_adjustments = sa.Table(
    "stock_adjustments",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("product_id", sa.BigInteger, nullable=False),  # no FK, as holds and orders (migration 0002)
    sa.Column("delta", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.String(255), nullable=False),
    sa.Column("stock_after", sa.BigInteger, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.CheckConstraint("delta <> 0", name="ck_stock_adjustments_delta_nonzero"),
    sa.CheckConstraint("stock_after >= 0", name="ck_stock_adjustments_stock_after_nonnegative"),
    sa.Index("ix_stock_adjustments_product_id", "product_id", "id"),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("scope", sa.String(64), primary_key=True),
    sa.Column("key_hash", sa.String(64), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    # the domain answer (application/records.py), stored in the transaction of the effect
    sa.Column("answer", sa.Text, nullable=True),
    sa.Column("claimed_at", Timestamp, nullable=False),
    sa.Index("ix_idempotency_keys_claimed", "claimed_at"),
)

event_log = sa.Table(
    "event_log",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ix_event_log_event_id", "event", "id"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("task", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("retry_at", Timestamp, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("completed_at", Timestamp, nullable=True),
    # the lease (migration 0004): when a task last started the message, and how often one did
    sa.Column("started_at", Timestamp, nullable=True),
    sa.Column("deliveries", sa.Integer, nullable=False, server_default="0"),
    # null: sent once, when it was created
    sa.Column("resent_at", Timestamp, nullable=True),
    sa.Index("ix_outbox_pending", "completed_at", "retry_at"),
    sa.Index("ix_outbox_started", "started_at"),
)
