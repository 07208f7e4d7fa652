"""durable delivery attempts, lease generations, lanes

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # When a send of this post was last admitted by the platform's rate limiter: a
    # post attempted before (a restart, a change of leader) may have arrived, and is
    # looked up before it is sent again.
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("attempted_at", sa.DateTime(), nullable=True))
    # Each lane (platform, room) finds its next post by this index.
    op.create_index("ix_outbox_lane", "outbox", ["status", "platform", "destination", "id"])
    # The fencing token: +1 each time the lease changes hands.
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("generation", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("generation")
    op.drop_index("ix_outbox_lane", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("attempted_at")
