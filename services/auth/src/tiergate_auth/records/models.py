"""The durable tables, as SQLAlchemy 2 typed declarative models; one schema for both backends.

Times are integer unix seconds (BIGINT): they index and compare identically on PostgreSQL and
SQLite, which store timezone-aware datetimes differently. JSON columns are `JSON`, JSONB on
PostgreSQL. The migration in `migrations/versions/` creates exactly these tables; a test
compares the two.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, MetaData, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["AuditRecord", "Base", "ChatRow", "FeedbackRow", "Json"]

Json = JSON().with_variant(JSONB(), "postgresql")
# BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the autoincrementing rowid.
Id = BigInteger().with_variant(Integer(), "sqlite")

_NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """The declarative base; constraint names are fixed so migrations can name them."""

    metadata = MetaData(naming_convention=_NAMING)


class ChatRow(Base):
    """One consented exchange (messages and answer), kept `retention_days`."""

    __tablename__ = "chat_records"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    answer_id: Mapped[str] = mapped_column(String(128), unique=True)
    subject: Mapped[str] = mapped_column(String(200), index=True)
    conversation_id: Mapped[str] = mapped_column(String(128))
    tier: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200))
    backend: Mapped[str] = mapped_column(String(200))
    api: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[int] = mapped_column(BigInteger, index=True)
    messages: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    answer: Mapped[dict[str, Any]] = mapped_column(Json)
    finish_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)


class FeedbackRow(Base):
    """One answer's feedback (a second replaces the first); never the prompt or the answer."""

    __tablename__ = "feedback"
    __table_args__ = (
        Index("ix_feedback_model_created_at", "model", "created_at"),
        Index("ix_feedback_flag_created_at", "flag", "created_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    answer_id: Mapped[str] = mapped_column(String(128), unique=True)
    subject_digest: Mapped[str] = mapped_column(String(128))
    tier: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200))
    backend: Mapped[str] = mapped_column(String(200))
    api: Mapped[str] = mapped_column(String(200))
    rating: Mapped[str | None] = mapped_column(String(16), nullable=True)
    flag: Mapped[str | None] = mapped_column(String(32), nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    answered_at: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class AuditRecord(Base):
    """An admin action: who (the admin token and client address), what, on what."""

    __tablename__ = "audit_records"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    at: Mapped[int] = mapped_column(BigInteger, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(200), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(Json)
