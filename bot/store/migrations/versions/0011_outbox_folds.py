"""outbox.fold_of: pages to one person sent together as one message

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The key of the post whose message also carries this one (bot/delivery_fold.py),
    # recorded with the attempt: a fold attempted before a restart is sent again, or
    # found, with exactly the same posts.
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("fold_of", sa.String(length=300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("fold_of")
