"""SQLAlchemy models. The schema itself comes only from the Alembic migrations in migrations/;
a test upgrades an empty database to head and checks these models match it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, false, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def new_id() -> str:
    return uuid.uuid4().hex


def iso_utc(moment: datetime) -> str:
    """A stored (naive, UTC) time as ISO 8601 with its zone, as the API sends it."""
    return moment.replace(tzinfo=UTC).isoformat()


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("principal", "sha256", name="uq_documents_principal_sha256"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    principal: Mapped[str] = mapped_column(String(64), default="", index=True)
    filename: Mapped[str] = mapped_column(String(512))
    media_type: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # pdf | text | code | archive | docx | html
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int]
    n_pages: Mapped[int | None]
    n_sections: Mapped[int]
    n_chars: Mapped[int]
    token_estimate: Mapped[int]
    skipped: Mapped[list[Any]] = mapped_column(default=list)
    # the library that produced the sections (pypdf, pypdfium2, python-docx, beautifulsoup4, text, zipfile)
    parser: Mapped[str] = mapped_column(String(32), default="", server_default="")
    # how it was read: OCR pages, languages, seconds and mean confidence; Word revisions; parse seconds
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    sections: Mapped[list[Section]] = relationship(
        back_populates="document", cascade="all, delete-orphan", passive_deletes=True,
        order_by="Section.ordinal",
    )


class Section(Base):
    __tablename__ = "sections"
    __table_args__ = (Index("ix_sections_document_ordinal", "document_id", "ordinal", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    ordinal: Mapped[int]
    page: Mapped[int | None]
    path: Mapped[str | None] = mapped_column(String(1024))
    line_start: Mapped[int | None]
    line_end: Mapped[int | None]
    text: Mapped[str] = mapped_column(Text)
    n_chars: Mapped[int]
    token_estimate: Mapped[int]
    heading: Mapped[str | None] = mapped_column(String(2048))  # Word/HTML: "4 Termination › 4.2 Notice"
    clause: Mapped[str | None] = mapped_column(String(128))  # what it is cited by: §4.2
    para_start: Mapped[int | None]  # paragraphs of the heading's span it holds, one per text line
    para_end: Mapped[int | None]
    ocr: Mapped[bool] = mapped_column(default=False, server_default=false())  # text recognised, not extracted
    ocr_confidence: Mapped[float | None]  # Tesseract's mean word confidence, 0-100

    document: Mapped[Document] = relationship(back_populates="sections")


class SessionDocument(Base):
    __tablename__ = "session_documents"

    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    document_id: Mapped[str] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    position: Mapped[int]


class ChatSession(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    principal: Mapped[str] = mapped_column(String(64), default="", index=True)
    title: Mapped[str] = mapped_column(String(256), default="")
    model: Mapped[str] = mapped_column(String(256))
    mode: Mapped[str] = mapped_column(String(16))
    plan: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    links: Mapped[list[SessionDocument]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="SessionDocument.position"
    )
    messages: Mapped[list[Message]] = relationship(
        back_populates="session", cascade="all, delete-orphan", passive_deletes=True, order_by="Message.id"
    )


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # user | assistant
    content: Mapped[str] = mapped_column(Text)
    thinking: Mapped[str | None] = mapped_column(Text)
    citations: Mapped[list[Any]] = mapped_column(default=list)
    mode: Mapped[str | None] = mapped_column(String(16))
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)  # coverage, notes, stop_reason
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    session: Mapped[ChatSession] = relationship(back_populates="messages")


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    principal: Mapped[str] = mapped_column(String(64), default="", index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|done|failed|cancelled
    document_ids: Mapped[list[Any]] = mapped_column(default=list)
    questions: Mapped[list[Any]] = mapped_column(default=list)
    model: Mapped[str | None] = mapped_column(String(256))
    mode: Mapped[str | None] = mapped_column(String(16))
    per_document: Mapped[bool] = mapped_column(default=False)
    # answer options (max_tokens, sampling, thinking) and one plan per document set, keyed by
    # document id (per_document) or "*" (the whole set), computed once by the worker
    options: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    plans: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    items: Mapped[list[BatchItem]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="BatchItem.id"
    )


class BatchItem(Base):
    __tablename__ = "batch_items"
    __table_args__ = (Index("ix_batch_items_status_lease", "status", "lease_expires_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    document_id: Mapped[str | None] = mapped_column(String(32))
    question_index: Mapped[int]
    question: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|done|failed|cancelled
    answer: Mapped[str | None] = mapped_column(Text)
    thinking: Mapped[str | None] = mapped_column(Text)
    citations: Mapped[list[Any]] = mapped_column(default=list)
    mode: Mapped[str | None] = mapped_column(String(16))
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # claims, grounding, notes, coverage of the answer (the assistant message's `extra`, for batches)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    lease_holder: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RateCounter(Base):
    """One fixed window of a rate limit (e.g. uploads by one principal): shared by every instance on the
    database, so a limit holds across them. Updated only by an atomic upsert (docqa/ratelimit.py)."""

    __tablename__ = "rate_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int]
    reset_at: Mapped[int] = mapped_column(BigInteger)  # epoch seconds when the window ends
