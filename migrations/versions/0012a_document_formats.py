"""document formats: parser and metadata per document; heading, clause, paragraphs and OCR per section

Revision ID: 0012a
Revises: 0003
Create Date: 2026-12-01 20:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012a"
down_revision: str | None = "0011a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parser", sa.String(length=32), server_default="", nullable=False))
        batch_op.add_column(sa.Column("meta", sa.JSON(), server_default=sa.text("'{}'"), nullable=False))
    with op.batch_alter_table("sections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("heading", sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column("clause", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("para_start", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("para_end", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("ocr", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("ocr_confidence", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sections", schema=None) as batch_op:
        for column in ("ocr_confidence", "ocr", "para_end", "para_start", "clause", "heading"):
            batch_op.drop_column(column)
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.drop_column("meta")
        batch_op.drop_column("parser")
