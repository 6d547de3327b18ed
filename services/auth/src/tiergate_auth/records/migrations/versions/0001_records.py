"""Records schema: chat_records, feedback, audit_records.

Revision ID: 0001_records
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_records"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the three tables and their indexes."""
    op.create_table(
        "chat_records",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("answer_id", sa.String(128), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("tier", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("backend", sa.String(200), nullable=False),
        sa.Column("api", sa.String(200), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("messages", _JSON, nullable=False),
        sa.Column("answer", _JSON, nullable=False),
        sa.Column("finish_reason", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_chat_records"),
        sa.UniqueConstraint("answer_id", name="uq_chat_records_answer_id"),
    )
    op.create_index("ix_chat_records_subject", "chat_records", ["subject"])
    op.create_index("ix_chat_records_created_at", "chat_records", ["created_at"])
    op.create_table(
        "feedback",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("answer_id", sa.String(128), nullable=False),
        sa.Column("subject_digest", sa.String(128), nullable=False),
        sa.Column("tier", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("backend", sa.String(200), nullable=False),
        sa.Column("api", sa.String(200), nullable=False),
        sa.Column("rating", sa.String(16), nullable=True),
        sa.Column("flag", sa.String(32), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("answered_at", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
        sa.UniqueConstraint("answer_id", name="uq_feedback_answer_id"),
    )
    op.create_index("ix_feedback_model_created_at", "feedback", ["model", "created_at"])
    op.create_index("ix_feedback_flag_created_at", "feedback", ["flag", "created_at"])
    op.create_table(
        "audit_records",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=True),
        sa.Column("detail", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_records"),
    )
    op.create_index("ix_audit_records_at", "audit_records", ["at"])


def downgrade() -> None:
    """Drop them (every record with them)."""
    op.drop_table("audit_records")
    op.drop_table("feedback")
    op.drop_table("chat_records")
