"""lab results: comparator (censored results), UTC offset of the time, result status

PRODUCT.md §4 (censored results such as ``<0.01`` are stored with their comparator, never as the
bare number) and §6 edition 2 (a time's UTC offset is kept beside the recorded time; corrected and
preliminary results). Existing rows are exact (comparator NULL), without an offset, and final.

Only columns are added (no batch table copy), so the audit triggers of 0002 are untouched.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 22:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("lab_result", sa.Column("comparator", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=True))
    op.add_column("lab_result", sa.Column("taken_at_offset_minutes", sa.Integer(), nullable=True))
    op.add_column(
        "lab_result",
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False, server_default="final"),
    )


def downgrade() -> None:
    with op.batch_alter_table("lab_result", schema=None) as batch_op:
        batch_op.drop_column("status")
        batch_op.drop_column("taken_at_offset_minutes")
        batch_op.drop_column("comparator")
