"""app_user.display_name: how reports and the dashboard name the person

Issue 18 point 10: the PDF report's "Prepared by" line named only the account's user name. An
account may now carry a display name (e.g. "Dr A. Mensah, dermatology registrar"), set with
``users add --display-name`` or ``users set-name``; existing accounts have none (NULL) and are
named by their user name as before.

Only a column is added (no batch table copy), so the audit triggers of 0002 are untouched.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 07:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("app_user", sa.Column("display_name", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.drop_column("display_name")
