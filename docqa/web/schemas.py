"""Response shapes of the REST API (they feed the OpenAPI schema at /schema)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from docqa.engine.sampling import RANGES
from docqa.store.models import Document, Section


@dataclass
class SkippedFile:
    path: str
    reason: str


@dataclass
class DocumentOut:
    id: str
    filename: str
    media_type: str
    kind: str
    sha256: str
    size_bytes: int
    n_pages: int | None
    n_sections: int
    n_chars: int
    token_estimate: int
    created_at: datetime
    skipped: list[SkippedFile] = field(default_factory=list)
    parser: str = ""  # the library that produced the sections: pypdf, pypdfium2, python-docx, beautifulsoup4 …
    # how it was read: {"ocr": {pages, langs, seconds, mean_confidence}, "revisions": true, "parse_seconds"}
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, d: Document) -> DocumentOut:
        return cls(
            id=d.id, filename=d.filename, media_type=d.media_type, kind=d.kind, sha256=d.sha256,
            size_bytes=d.size_bytes, n_pages=d.n_pages, n_sections=d.n_sections, n_chars=d.n_chars,
            token_estimate=d.token_estimate,
            created_at=d.created_at.replace(tzinfo=UTC),  # stored as naive UTC; RFC 3339 needs the offset
            skipped=[SkippedFile(**s) for s in d.skipped or []], parser=d.parser or "", meta=d.meta or {},
        )


@dataclass
class SectionOut:
    ordinal: int
    page: int | None
    path: str | None
    line_start: int | None
    line_end: int | None
    text: str
    n_chars: int
    token_estimate: int
    heading: str | None = None  # Word/HTML heading path, "4 Termination › 4.2 Notice"
    clause: str | None = None  # cited as §clause
    para_start: int | None = None  # paragraph numbers within the heading's span, one per line of text
    para_end: int | None = None
    ocr: bool = False  # the text was recognised by OCR from a scanned page, not extracted
    ocr_confidence: float | None = None  # Tesseract's mean word confidence, 0-100

    @classmethod
    def of(cls, s: Section) -> SectionOut:
        return cls(
            ordinal=s.ordinal, page=s.page, path=s.path, line_start=s.line_start, line_end=s.line_end,
            text=s.text, n_chars=s.n_chars, token_estimate=s.token_estimate, heading=s.heading, clause=s.clause,
            para_start=s.para_start, para_end=s.para_end, ocr=bool(s.ocr), ocr_confidence=s.ocr_confidence,
        )


@dataclass
class SectionPage:
    items: list[SectionOut]
    total: int
    offset: int
    limit: int


@dataclass
class ErrorOut:
    status_code: int
    detail: str
    extra: dict[str, Any] | list[Any] | None = None  # a list for field validation problems


@dataclass
class Health:
    status: str
    version: str
    documents: int | None  # the caller's own documents; null without a valid API key
    details: dict[str, Any] = field(default_factory=dict)


# -- request bodies: the ranges here are the API's rules (and the OpenAPI schema's), checked before any work ----

JSON_BODY_LIMIT = 4 * 1024 * 1024  # a JSON request body, in bytes (a batch of 200 long questions fits)
MAX_ID = 64  # ids are 32 hex digits; anything longer cannot exist
DocumentIds = Annotated[list[Annotated[str, Meta(max_length=MAX_ID)]], Meta(max_length=1000)]


def _range(option: str) -> Meta:
    """The option's range as sampling.RANGES writes it (the one place sampling ranges live)."""
    r = RANGES[option]
    low, high = (int(r.low), int(r.high)) if r.integer else (r.low, r.high)
    return Meta(gt=low, le=high, description=r.note or None) if r.low_open else \
        Meta(ge=low, le=high, description=r.note or None)


class SamplingIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Sampling overrides; each left out takes the model's preset. NaN and infinities are refused."""

    temperature: Annotated[float, _range("temperature")] | UnsetType = UNSET
    top_p: Annotated[float, _range("top_p")] | UnsetType = UNSET
    top_k: Annotated[int, _range("top_k")] | UnsetType = UNSET
    min_p: Annotated[float, _range("min_p")] | UnsetType = UNSET
    presence_penalty: Annotated[float, _range("presence_penalty")] | UnsetType = UNSET
    seed: Annotated[int, _range("seed")] | UnsetType = UNSET
    preset: Literal["documents", "instruct", "thinking", "greedy"] | UnsetType = UNSET

    def to_dict(self) -> dict[str, float | str]:
        return {k: v for k in self.__struct_fields__ if (v := getattr(self, k)) is not UNSET}


MaxTokens = Annotated[int, Meta(ge=1, le=1 << 20)]
Name = Annotated[str, Meta(max_length=256)]
