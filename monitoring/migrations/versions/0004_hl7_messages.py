"""HL7 v2 lab feed: control IDs of answered messages (idempotence) and OBX-8 abnormal flags

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hl7_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("sender", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("control_id", sqlmodel.sql.sqltypes.AutoString(length=199), nullable=False),
        sa.Column("message_type", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("ack_code", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
        sa.Column("ack_text", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=True),
        sa.Column("results_stored", sa.Integer(), nullable=False),
        sa.Column("via", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patient.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sender", "control_id", name="ux_hl7_sender_control"),
    )
    # A plain ADD COLUMN (no batch copy of lab_result: its indexes and the audit triggers stay).
    op.add_column("lab_result", sa.Column("abnormal_flags", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lab_result", schema=None) as batch_op:
        batch_op.drop_column("abnormal_flags")
    op.drop_table("hl7_message")
