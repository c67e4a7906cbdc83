"""delegates.phone_bad: Twilio said the number cannot get SMS (21211 invalid, 21614 not a mobile)

Revision ID: 0006
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delegates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone_bad", sa.Boolean(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("delegates", schema=None) as batch_op:
        batch_op.drop_column("phone_bad")
