"""seam: documents, sessions and batches name their principal `principal`, not `owner` (the worker's is `lease_holder`)

Revision ID: 0015_principal
Revises: 0014_seam
Create Date: 2026-12-05 12:55:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015_principal"
down_revision: str | None = "0014_seam"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("documents", "sessions", "batches")


def _rename(old: str, new: str) -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{table}_{old}")
            if table == "documents":
                batch_op.drop_constraint(f"uq_documents_{old}_sha256", type_="unique")
            batch_op.alter_column(old, new_column_name=new)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(f"ix_{table}_{new}", [new], unique=False)
            if table == "documents":
                batch_op.create_unique_constraint(f"uq_documents_{new}_sha256", [new, "sha256"])


def upgrade() -> None:
    _rename("owner", "principal")


def downgrade() -> None:
    _rename("principal", "owner")
