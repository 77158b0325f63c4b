"""patient.culprits_as_entered: each culprit drug as written, beside the name it resolved to

Issue 14 (drug names as EHRs write them): a culprit given as "Bactrim DS" or "Tegretol XR" is stored
as its resolved generic name in ``culprit_drugs`` (what RECHALLENGE and CULPRIT_NOT_STOPPED match);
the text as written is kept here, with its ingredients, for display and audit. Existing patients
have none (NULL).

Only a column is added (no batch table copy), so the audit triggers of 0002 are untouched.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 06:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("patient", sa.Column("culprits_as_entered", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_column("culprits_as_entered")
