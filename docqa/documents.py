"""Use cases for documents: ingest, list, read sections, delete. No HTTP here."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from docqa.errors import ClientGone, DocumentTooLarge, InvalidDocument, InvalidRequest, NotFound, short_id
from docqa.ingest import ParsedDocument, ParseLimits
from docqa.ingest.pool import ParsePool
from docqa.ingest.sandbox import parse_in_sandbox
from docqa.settings import Settings
from docqa.store.db import Database
from docqa.store.files import BlobStore
from docqa.store.models import Document, Section
from docqa.text import clean_text

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    document: Document
    created: bool
    parse_peak_rss_bytes: int = 0


class DocumentService:
    def __init__(self, settings: Settings, db: Database, blobs: BlobStore) -> None:
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.on_delete: list[Callable[[str], object]] = []  # called with a deleted document's id
        self.parse_pool = ParsePool(settings.parse_processes, settings.principal_parses)
        # A blob is shared by every principal who uploaded the same bytes: writing a row for it and deleting
        # the last row (then the file) must not interleave, or a delete could remove a file just reused.
        # The lock is per hash and, on PostgreSQL, spans every instance sharing the database and folder
        # (an advisory lock); the orphan sweep takes it too, so it never removes a file being stored.
        self.limits = ParseLimits(
            max_pdf_pages=settings.max_pdf_pages,
            max_archive_entries=settings.max_archive_entries,
            max_archive_bytes=settings.max_archive_bytes,
            max_archive_ratio=settings.max_archive_ratio,
            max_archive_file_bytes=settings.max_archive_file_bytes,
            section_max_chars=settings.section_max_chars,
            ocr=settings.ocr,
            ocr_langs=settings.ocr_langs,
            ocr_page_timeout_s=settings.ocr_page_timeout_s,
            ocr_budget_s=settings.ocr_budget_s,
            ocr_dpi=settings.ocr_dpi,
        )

    def ingest(self, filename: str, data: bytes, principal: str = "", *, password: str | None = None,
               ocr_langs: str | None = None, cancel: threading.Event | None = None) -> IngestResult:
        """Parse and store an upload. `password` opens an encrypted PDF and is never stored or logged;
        `ocr_langs` (Tesseract's "eng+ara" form) overrides DOCQA_OCR_LANGS for this upload. The parse
        takes one of the server's parse places (ingest/pool.py) or is refused; setting `cancel` (the
        client left) ends it, and nothing is stored."""
        filename = _clean_name(filename)
        if len(data) > self.settings.max_upload_bytes:
            raise DocumentTooLarge(
                f"{filename} is {len(data):,} bytes; the upload limit is {self.settings.max_upload_bytes:,} bytes."
            )
        if not data:
            raise InvalidDocument(f"{filename} is empty.")
        sha = hashlib.sha256(data).hexdigest()
        existing = self._by_sha(principal, sha)
        if existing is not None:
            return IngestResult(existing, created=False)
        langs = _ocr_langs(ocr_langs)
        with self.parse_pool.place(principal, filename):
            parsed = parse_in_sandbox(
                data, filename, self.limits,
                timeout_s=self.settings.parse_timeout_s, memory_bytes=self.settings.parse_memory_bytes,
                password=password or None, ocr_langs=langs, cancel=cancel,
            )
        if cancel is not None and cancel.is_set():
            raise ClientGone(f"The client went away while {filename} was parsed; it was not stored.")
        if parsed.meta.get("ocr", {}).get("pages"):
            ocr = parsed.meta["ocr"]
            log.info("%s: OCR read %d page(s) in %.1f s (%s, mean confidence %s)", filename, len(ocr["pages"]),
                     ocr["seconds"], ocr["langs"], ocr["mean_confidence"])
        with self.db.lock("blob", sha):
            self.blobs.put(sha, data)
            try:
                doc = self._insert(principal, filename, sha, len(data), parsed)
            except IntegrityError:
                # The same bytes were stored by a concurrent upload: theirs wins, the blob is shared.
                existing = self._by_sha(principal, sha)
                if existing is None:
                    raise
                return IngestResult(existing, created=False)
            except BaseException:
                self._drop_blob_if_unused(sha)
                raise
        return IngestResult(doc, created=True, parse_peak_rss_bytes=parsed.peak_rss_bytes)

    def _insert(self, principal: str, filename: str, sha: str, size: int, parsed: ParsedDocument) -> Document:
        with self.db.transaction() as s:
            doc = Document(
                principal=principal, filename=filename, media_type=parsed.media_type, kind=parsed.kind, sha256=sha,
                size_bytes=size, n_pages=parsed.n_pages, n_sections=len(parsed.sections),
                n_chars=parsed.n_chars, token_estimate=parsed.token_estimate, skipped=parsed.skipped,
                parser=parsed.parser, meta=parsed.meta,
            )
            s.add(doc)
            s.flush()
            s.add_all(
                Section(
                    document_id=doc.id, ordinal=i, page=sec.page, path=sec.path, line_start=sec.line_start,
                    line_end=sec.line_end, text=sec.text, n_chars=len(sec.text), token_estimate=sec.token_estimate,
                    heading=sec.heading, clause=sec.clause, para_start=sec.para_start, para_end=sec.para_end,
                    ocr=sec.ocr, ocr_confidence=sec.ocr_confidence,
                )
                for i, sec in enumerate(parsed.sections)
            )
        return doc

    def _by_sha(self, principal: str, sha: str) -> Document | None:
        with self.db.reader() as s:
            return s.scalars(select(Document).where(Document.principal == principal, Document.sha256 == sha)).first()

    def _by_any_owner(self, sha: str) -> bool:
        with self.db.reader() as s:
            return bool(s.scalar(select(func.count()).select_from(Document).where(Document.sha256 == sha)))

    def list_documents(self, principal: str = "") -> list[Document]:
        with self.db.reader() as s:
            return list(s.scalars(select(Document).where(Document.principal == principal)
                                  .order_by(Document.created_at.desc())))

    def get(self, document_id: str, principal: str = "") -> Document:
        with self.db.reader() as s:
            doc = s.get(Document, document_id)
        if doc is None or doc.principal != principal:
            raise NotFound(f"There is no document with id {short_id(document_id)}.")
        return doc

    def sections(
        self, document_id: str, principal: str = "", *, offset: int = 0, limit: int = 100
    ) -> tuple[list[Section], int]:
        self.get(document_id, principal)
        with self.db.reader() as s:
            total = s.scalar(select(func.count()).select_from(Section).where(Section.document_id == document_id))
            rows = s.scalars(
                select(Section).where(Section.document_id == document_id).order_by(Section.ordinal)
                .offset(offset).limit(limit)
            )
            return list(rows), int(total or 0)

    def all_sections(self, document_id: str) -> list[Section]:
        with self.db.reader() as s:
            return list(s.scalars(select(Section).where(Section.document_id == document_id).order_by(Section.ordinal)))

    def delete(self, document_id: str, principal: str = "") -> None:
        doc = self.get(document_id, principal)
        with self.db.lock("blob", doc.sha256):
            with self.db.transaction() as s:
                row = s.get(Document, doc.id)
                if row is None:  # a concurrent delete of the same document won
                    raise NotFound(f"There is no document with id {short_id(document_id)}.")
                s.delete(row)
            self._drop_blob_if_unused(doc.sha256)
        for listener in self.on_delete:
            listener(doc.id)

    def _drop_blob_if_unused(self, sha: str) -> None:
        """Remove the stored file once no document of any principal refers to it (the file is shared)."""
        with self.db.reader() as s:
            used = s.scalar(select(func.count()).select_from(Document).where(Document.sha256 == sha))
        if not used:
            self.blobs.remove(sha)

    def sweep_orphans(self) -> list[str]:
        """At start: remove blobs (and temp files) left by a crash between writing the file and committing
        the row. Another instance may be storing a file right now: each candidate is removed only under
        its hash's lock, taken without waiting (a held lock means someone is writing it: skipped), and
        after checking again, under the lock, that no row refers to it."""
        with self.db.reader() as s:
            referenced = set(s.scalars(select(Document.sha256)))
        removed: list[str] = []
        for sha, paths in self.blobs.orphans(referenced).items():
            with self.db.lock("blob", sha, wait=False) as got:
                if not got:
                    log.info("orphan sweep: %s is being stored by another instance; left alone", sha[:12])
                    continue
                if sha and self._by_any_owner(sha):
                    paths = [p for p in paths if p.name != sha]  # committed meanwhile: only temp files go
                removed.extend(self.blobs.remove_paths(paths))
        if removed:
            log.info("removed %d orphan upload file(s)", len(removed))
        return removed


def _ocr_langs(value: str | None) -> str | None:
    """An upload's OCR languages, checked for form (whether Tesseract has them is checked where it runs)."""
    if value is None or not value.strip():
        return None
    langs = [lang.strip() for lang in value.replace(",", "+").split("+") if lang.strip()]
    if not langs or len(langs) > 8 or any(not lang.replace("_", "").isalnum() or len(lang) > 32 for lang in langs):
        raise InvalidRequest(f"ocr_langs takes Tesseract language codes joined by '+' (e.g. eng+ara), not {value!r}.")
    return "+".join(langs)


def _clean_name(filename: str) -> str:
    name = clean_text((filename or "").replace("\\", "/").rsplit("/", 1)[-1])
    return name[:255] or "upload"
