"""Customers and limits per customer, and the indexes that list orders and holds.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

`products.max_per_customer` (null: no limit), `holds.customer_id` and `orders.customer_id`
(null: no customer named), and `customer_claims`: one row per (product, customer) holding the
units of that customer's active holds and claiming orders, so that one conditional UPDATE of
it decides a claim. Customer ids compare exactly (ascii_bin on MySQL, SQLite's binary
default). Existing holds and orders name no customer, so no claim is owed: the new table
starts empty and `stockade check` agrees with it.

The indexes let `GET /api/orders` and `GET /api/holds` walk each filter in id order (keyset
pagination) instead of sorting every matching row.

Plain ADD COLUMN (nullable) and CREATE INDEX: on MySQL 8 and MariaDB 10.6+ InnoDB adds the
columns in place (ALGORITHM=INSTANT) and builds the indexes online, without blocking
writers; SQLite adds the columns with ALTER TABLE ADD COLUMN, no table copy.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CustomerId = sa.String(64).with_variant(mysql.VARCHAR(64, charset="ascii", collation="ascii_bin"), "mysql", "mariadb")

#: (table, index, columns) of the listing indexes
LISTING_INDEXES = [
    (table, f"ix_{table}_{name}", [column, "id"])
    for table in ("orders", "holds")
    for name, column in (("status_id", "status"), ("product_id", "product_id"), ("customer_id", "customer_id"))
]


def upgrade() -> None:
    op.add_column("products", sa.Column("max_per_customer", sa.Integer, nullable=True))
    op.add_column("holds", sa.Column("customer_id", CustomerId, nullable=True))
    op.add_column("orders", sa.Column("customer_id", CustomerId, nullable=True))
    op.create_table(
        "customer_claims",
        sa.Column("product_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("customer_id", CustomerId, primary_key=True),
        sa.Column("claimed", sa.BigInteger, nullable=False, server_default="0"),
        sa.CheckConstraint("claimed >= 0", name="ck_customer_claims_claimed_nonnegative"),
    )
    for table, index, columns in LISTING_INDEXES:
        op.create_index(index, table, columns)


def downgrade() -> None:
    for table, index, _ in LISTING_INDEXES:
        op.drop_index(index, table_name=table)
    op.drop_table("customer_claims")
    for table, column in (("orders", "customer_id"), ("holds", "customer_id"), ("products", "max_per_customer")):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
