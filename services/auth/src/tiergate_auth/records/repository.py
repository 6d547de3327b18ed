"""The records' operations: store and read chats, upsert and list feedback, audit, purge.

Each method is one transaction (`Database.session()`); a failing database raises
`RecordsUnavailable` (503). Upserts are `INSERT ... ON CONFLICT` on both dialects, so a
retried or concurrent write of the same answer id never makes a second row.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from tiergate_auth.records.db import Database
from tiergate_auth.records.models import AuditRecord, ChatRow, FeedbackRow
from tiergate_proto.records import ChatEntry, ChatRecord, FeedbackItem, FeedbackRecord
from tiergate_runtime.errors import ApiError

__all__ = ["FeedbackFilter", "Records", "audit_best_effort"]

_log = structlog.get_logger("tiergate.auth.records")

DAY_S = 86400


@dataclass(frozen=True, slots=True)
class FeedbackFilter:
    """The admin list's and export's filters (None: any)."""

    model: str | None = None
    flag: str | None = None
    rating: str | None = None
    since: int | None = None
    until: int | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        """WHERE clauses for these filters."""
        clauses: list[ColumnElement[bool]] = []
        if self.model is not None:
            clauses.append(FeedbackRow.model == self.model)
        if self.flag is not None:
            clauses.append(FeedbackRow.flag == self.flag)
        if self.rating is not None:
            clauses.append(FeedbackRow.rating == self.rating)
        if self.since is not None:
            clauses.append(FeedbackRow.created_at >= self.since)
        if self.until is not None:
            clauses.append(FeedbackRow.created_at < self.until)
        return clauses


class Records:
    """Everything done with the records tables."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.retention_s = db.settings.retention_days * DAY_S

    def _insert(self, table: Any) -> Any:
        """The dialect's INSERT (both have ON CONFLICT, with the same arguments)."""
        if self.db.engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    # -- chats ---------------------------------------------------------------------------

    async def store_chat(self, record: ChatRecord) -> None:
        """Keep the exchange; a second write of the same answer id changes nothing."""
        async with self.db.session() as session:
            values = {
                "answer_id": record.answer_id,
                "subject": record.subject,
                "conversation_id": record.conversation_id,
                "tier": record.tier,
                "model": record.model,
                "backend": record.backend,
                "api": record.api,
                "created_at": record.created_at,
                "messages": record.messages,
                "answer": record.answer,
                "finish_reason": record.finish_reason,
            }
            statement = self._insert(ChatRow).values(**values)
            await session.execute(statement.on_conflict_do_nothing(index_elements=["answer_id"]))

    def _entry(self, row: ChatRow) -> ChatEntry:
        return ChatEntry(
            id=row.answer_id,
            conversation_id=row.conversation_id,
            model=row.model,
            api=row.api,
            created_at=row.created_at,
            expires_at=row.created_at + self.retention_s,
            messages=row.messages,
            answer=row.answer,
            finish_reason=row.finish_reason,
        )

    async def chat_page(
        self, subject: str, limit: int, after: str | None
    ) -> tuple[list[ChatEntry], bool] | None:
        """The subject's chats, newest first, after the one with answer id `after`; `(page,
        has_more)`, or None when `after` names none of theirs."""
        order = (ChatRow.created_at.desc(), ChatRow.id.desc())
        async with self.db.session() as session:
            query = select(ChatRow).where(ChatRow.subject == subject)
            if after is not None:
                cursor = (
                    await session.execute(
                        select(ChatRow.created_at, ChatRow.id).where(
                            ChatRow.subject == subject, ChatRow.answer_id == after
                        )
                    )
                ).first()
                if cursor is None:
                    return None
                at, row_id = cursor
                query = query.where(
                    or_(
                        ChatRow.created_at < at, and_(ChatRow.created_at == at, ChatRow.id < row_id)
                    )
                )
            rows = (await session.scalars(query.order_by(*order).limit(limit + 1))).all()
        return [self._entry(row) for row in rows[:limit]], len(rows) > limit

    async def chats_of(self, subject: str) -> list[ChatEntry]:
        """Every chat of the subject, newest first (the export: bounded by the retention)."""
        async with self.db.session() as session:
            rows = await session.scalars(
                select(ChatRow)
                .where(ChatRow.subject == subject)
                .order_by(ChatRow.created_at.desc(), ChatRow.id.desc())
            )
            return [self._entry(row) for row in rows]

    async def erase_chats(
        self, subject: str, conversation_id: str | None = None, until: int | None = None
    ) -> int:
        """Delete the subject's chats (one conversation's, or those created up to `until`, if
        given); how many."""
        clauses = [ChatRow.subject == subject]
        if conversation_id is not None:
            clauses.append(ChatRow.conversation_id == conversation_id)
        if until is not None:
            clauses.append(ChatRow.created_at <= until)
        async with self.db.session() as session:
            result = await session.execute(delete(ChatRow).where(*clauses))
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def erase_answer(self, subject: str, answer_id: str) -> None:
        """Delete one stored exchange of the subject."""
        async with self.db.session() as session:
            await session.execute(
                delete(ChatRow).where(ChatRow.subject == subject, ChatRow.answer_id == answer_id)
            )

    async def purge(self, now: int | None = None) -> int:
        """Delete every chat older than the retention (one DELETE on the created_at index)."""
        cutoff = (int(time.time()) if now is None else now) - self.retention_s
        async with self.db.session() as session:
            result = await session.execute(delete(ChatRow).where(ChatRow.created_at < cutoff))
        return int(result.rowcount)  # type: ignore[attr-defined]

    # -- feedback ------------------------------------------------------------------------

    async def put_feedback(self, record: FeedbackRecord) -> tuple[int, bool]:
        """Store one answer's feedback, replacing an earlier one: `(created_at, replaced)`."""
        now = int(time.time())
        fields: dict[str, Any] = {
            "subject_digest": record.subject_digest,
            "tier": record.tier,
            "model": record.model,
            "backend": record.backend,
            "api": record.api,
            "rating": record.rating,
            "flag": record.flag,
            "comment": record.comment,
            "answered_at": record.answered_at,
            "created_at": now,
            "updated_at": now,
        }
        async with self.db.session() as session:
            # Insert unless there is one (the loser of a race waits for the winner's commit,
            # then conflicts), else replace: both dialects, one row per answer id.
            inserted = await session.scalar(
                self._insert(FeedbackRow)
                .values(answer_id=record.answer_id, **fields)
                .on_conflict_do_nothing(index_elements=["answer_id"])
                .returning(FeedbackRow.id)
            )
            if inserted is not None:
                return now, False
            await session.execute(
                update(FeedbackRow)
                .where(FeedbackRow.answer_id == record.answer_id)
                .values(**fields)
            )
        return now, True

    async def feedback_page(
        self, filters: FeedbackFilter, limit: int, after: int | None
    ) -> tuple[list[FeedbackItem], bool]:
        """Feedback matching `filters`, newest (highest id) first, ids below `after`."""
        async with self.db.session() as session:
            rows = await self._feedback(session, filters, limit + 1, after)
        return [_item(row) for row in rows[:limit]], len(rows) > limit

    async def feedback_batches(
        self, filters: FeedbackFilter, batch: int = 500
    ) -> AsyncIterator[list[FeedbackItem]]:
        """Every matching feedback record, newest first, `batch` rows per transaction."""
        after: int | None = None
        while True:
            async with self.db.session() as session:
                rows = await self._feedback(session, filters, batch, after)
            if not rows:
                return
            yield [_item(row) for row in rows]
            if len(rows) < batch:
                return
            after = rows[-1].id

    async def _feedback(
        self, session: AsyncSession, filters: FeedbackFilter, limit: int, after: int | None
    ) -> Sequence[FeedbackRow]:
        clauses = filters.clauses()
        if after is not None:
            clauses.append(FeedbackRow.id < after)
        query = select(FeedbackRow).where(*clauses).order_by(FeedbackRow.id.desc()).limit(limit)
        return (await session.scalars(query)).all()

    # -- audit ---------------------------------------------------------------------------

    async def audit(
        self, actor: str, action: str, target: str | None, detail: dict[str, Any]
    ) -> None:
        """Record an admin action."""
        async with self.db.session() as session:
            session.add(
                AuditRecord(
                    at=int(time.time()), actor=actor, action=action, target=target, detail=detail
                )
            )

    async def audit_rows(self, action: str | None = None) -> list[AuditRecord]:
        """The audit records, oldest first (tests and operators)."""
        async with self.db.session() as session:
            query = select(AuditRecord).order_by(AuditRecord.id)
            if action is not None:
                query = query.where(AuditRecord.action == action)
            return list((await session.scalars(query)).all())

    async def count_chats(self) -> int:
        """How many chat records there are (tests and operators)."""
        async with self.db.session() as session:
            return int(await session.scalar(select(func.count()).select_from(ChatRow)) or 0)


def _item(row: FeedbackRow) -> FeedbackItem:
    return FeedbackItem(
        id=row.id,
        answer_id=row.answer_id,
        tier=row.tier,
        model=row.model,
        backend=row.backend,
        api=row.api,
        rating=row.rating,  # type: ignore[arg-type]
        flag=row.flag,  # type: ignore[arg-type]
        comment=row.comment,
        answered_at=row.answered_at,
        created_at=row.created_at,
    )


async def audit_best_effort(
    records: Records | None, actor: str, action: str, target: str | None
) -> None:
    """Audit an action on state outside the database (API keys live in Redis): a database
    failure is logged, not raised, so key management does not depend on it."""
    if records is None:
        return
    try:
        await records.audit(actor, action, target, {})
    except ApiError:
        _log.warning("audit_failed", action=action, target=target)
