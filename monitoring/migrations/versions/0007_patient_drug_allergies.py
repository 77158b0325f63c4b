"""patient.drug_allergies: drug allergies that are not DRESS culprits (FHIR AllergyIntolerance whose
reaction does not name DRESS), shown on the patient header

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 23:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.add_column(sa.Column("drug_allergies", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_column("drug_allergies")
