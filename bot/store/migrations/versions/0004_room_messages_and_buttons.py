"""room messages and button codes

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Which incident a chat message belongs to (a reply to it is about that incident):
    # found by key instead of scanning the outbox's references.
    op.create_table(
        "room_messages",
        sa.Column("platform", sa.String(length=20), nullable=False),
        sa.Column("chat_id", sa.String(length=100), nullable=False),
        sa.Column("message_id", sa.String(length=100), nullable=False),
        sa.Column("incident_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("platform", "chat_id", "message_id"),
    )
    # Buttons whose command does not fit the platform's button payload: the code sent
    # instead, and what it stands for (after a restart too).
    op.create_table(
        "button_codes",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("code"),
    )


def downgrade() -> None:
    op.drop_table("button_codes")
    op.drop_table("room_messages")
