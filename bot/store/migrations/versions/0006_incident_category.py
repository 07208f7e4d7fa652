"""incident root-cause category

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One of the runbook's patterns (bot/domain/categories.py) or "other"; set when the
    # incident is resolved, changed with /category. Repeats are counted by it.
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("category", sa.String(length=30), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("category")
