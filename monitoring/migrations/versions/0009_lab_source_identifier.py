"""lab results: the sender's business identifier (FHIR Observation.identifier)

PRODUCT.md §6 edition 2, "Corrections": a result re-sent with the same identity is an amendment,
never a second reading. A FHIR Observation's resource id is its identity on one server; another
server, or a re-export, gives the same laboratory result a new id but keeps its business identifier.
The identifier is stored beside the resource id (``source_id``) so the importer finds the result
either way. Existing rows have none (NULL).

Only a column and an index are added (no batch table copy), so the audit triggers of 0002 are
untouched.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 06:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("lab_result", sa.Column("source_identifier", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
    # Partial (as ux_lab_patient_source): rows without an identifier (every CSV row) are not in it.
    op.create_index(
        "ix_lab_patient_identifier",
        "lab_result",
        ["patient_id", "source_identifier"],
        sqlite_where=sa.text("source_identifier IS NOT NULL"),
        postgresql_where=sa.text("source_identifier IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_lab_patient_identifier", table_name="lab_result")
    with op.batch_alter_table("lab_result", schema=None) as batch_op:
        batch_op.drop_column("source_identifier")
