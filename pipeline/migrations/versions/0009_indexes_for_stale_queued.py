"""indexes for stale_queued: queued rows by queue time and by retry time

Revision ID: 0009
Revises: 0007
"""

from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_state_queued", ["state", "queued_at"], unique=False)
        batch_op.create_index("ix_ledger_state_retry", ["state", "retry_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_state_retry")
        batch_op.drop_index("ix_ledger_state_queued")
