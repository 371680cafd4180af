"""Drop the holds/orders -> products foreign keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

Their check took a shared lock on the product row on every hold or order status
change, which deadlocked against the exclusive lock of the stock UPDATE in the same
transaction. Products are only soft-deleted, so nothing relied on the database
enforcing these references.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("holds") as batch:
        batch.drop_constraint("fk_holds_product", type_="foreignkey")
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint("fk_orders_product", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("holds") as batch:
        batch.create_foreign_key("fk_holds_product", "products", ["product_id"], ["id"])
    with op.batch_alter_table("orders") as batch:
        batch.create_foreign_key("fk_orders_product", "products", ["product_id"], ["id"])
