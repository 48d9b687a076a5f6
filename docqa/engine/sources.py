"""The engine's documents: plain values, not database rows.

The engine (planning, prompts, chunking, citations, grounding) reads a document's identity and a
few facts, and each section's text with where it is. The use cases (sessions.py, worker.py) copy
those out of the ORM rows with `from_rows` once per question set, so the engine can be tested, and
backends swapped, without a database, and no lazy load ever runs outside a database session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Document:
    id: str | None
    filename: str
    sha256: str = ""
    kind: str = "text"
    media_type: str = "text/plain"
    n_pages: int | None = None
    token_estimate: int | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    principal: str = ""  # the principal it belongs to: the use case checked it; the engine never reads it


@dataclass(frozen=True)
class Section:
    ordinal: int
    text: str
    page: int | None = None
    path: str | None = None
    line_start: int | None = None
    line_end: int | None = None
    heading: str | None = None
    clause: str | None = None
    para_start: int | None = None
    para_end: int | None = None
    ocr: bool = False
    ocr_confidence: float | None = None
    id: int | None = None  # the stored row's, when there is one


Sources = list[tuple[Document, list[Section]]]


def from_rows(doc: Any, sections: list[Any]) -> tuple[Document, list[Section]]:
    """A stored document and its sections (store.models rows) as the engine's plain values."""
    return (
        Document(id=doc.id, filename=doc.filename, sha256=doc.sha256, kind=doc.kind, media_type=doc.media_type,
                 n_pages=doc.n_pages, token_estimate=doc.token_estimate, meta=dict(doc.meta or {}),
                 principal=getattr(doc, "principal", "") or ""),
        [Section(ordinal=s.ordinal, text=s.text, page=s.page, path=s.path, line_start=s.line_start,
                 line_end=s.line_end, heading=s.heading, clause=s.clause, para_start=s.para_start,
                 para_end=s.para_end, ocr=bool(s.ocr), ocr_confidence=s.ocr_confidence,
                 id=s.id) for s in sections],
    )
