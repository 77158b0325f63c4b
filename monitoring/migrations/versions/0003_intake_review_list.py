"""intake review list: items refused by an import run with --skip-invalid (or by a feed), kept as
received until a clinician corrects and stores them or discards them with a reason

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "intake_review_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("location", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("field", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("value", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("mrn", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("record", sa.JSON(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.Column("resolved_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("resolution", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("intake_review_item", schema=None) as batch_op:
        batch_op.create_index("ix_review_status_created", ["status", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("intake_review_item", schema=None) as batch_op:
        batch_op.drop_index("ix_review_status_created")
    op.drop_table("intake_review_item")
