"""seam: batch_items.lease_owner is lease_holder (the worker holding the item's lease, never its principal)

Revision ID: 0014_seam
Revises: 0013a
Create Date: 2026-12-05 10:05:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014_seam"
down_revision: str | None = "0013a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("batch_items", schema=None) as batch_op:
        batch_op.alter_column("lease_owner", new_column_name="lease_holder")


def downgrade() -> None:
    with op.batch_alter_table("batch_items", schema=None) as batch_op:
        batch_op.alter_column("lease_holder", new_column_name="lease_owner")
