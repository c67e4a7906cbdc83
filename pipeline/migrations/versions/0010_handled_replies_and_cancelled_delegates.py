"""handled replies and cancelled delegates

Revision ID: 0010
Revises: 0005
Create Date: 2026-12-01 10:45:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound", schema=None) as batch_op:
        batch_op.add_column(sa.Column("handled_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("handled_how", sa.String(length=20), nullable=True))
    with op.batch_alter_table("delegates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cancelled_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("delegates", schema=None) as batch_op:
        batch_op.drop_column("cancelled_at")
    with op.batch_alter_table("inbound", schema=None) as batch_op:
        batch_op.drop_column("handled_how")
        batch_op.drop_column("handled_at")
