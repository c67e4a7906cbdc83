"""What the RSVP page collects: dietary needs, a comment, and which fields the delegate chose there

Revision ID: 0007
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delegates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dietary", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("comment", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(
            sa.Column("set_by_delegate", sa.String(length=100), server_default="", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("delegates", schema=None) as batch_op:
        batch_op.drop_column("set_by_delegate")
        batch_op.drop_column("comment")
        batch_op.drop_column("dietary")
