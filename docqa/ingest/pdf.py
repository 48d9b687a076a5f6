"""PDF text per page; the page number (1-based) is the provenance.

pypdf reads the text layer. When pypdf cannot read the file at all (a broken page tree, an object
it rejects, a decoder it lacks), pypdfium2 (PDFium, the engine of Chrome's PDF viewer) reads it
instead, and the document records which parser produced it. Pages whose text layer is empty, or
nearly so (scans), are rendered with pypdfium2 and read by Tesseract (ocr.py); those sections are
marked `ocr` with Tesseract's mean confidence. A password, when given, opens an encrypted PDF in
both parsers; it is used only here, in the parse process, and never stored or logged.
"""

from __future__ import annotations

import io
import logging
import time
import zlib
from collections.abc import Callable
from typing import Any

import pypdfium2 as pdfium
from pypdf import PdfReader
from pypdf.errors import (
    DependencyError,
    FileNotDecryptedError,
    LimitReachedError,
    PyPdfError,
)

from docqa.errors import InvalidDocument, OcrUnavailable, ParseLimitExceeded, PasswordRequired
from docqa.ingest import ParsedDocument, ParsedSection, ParseLimits
from docqa.ingest import ocr as ocr_
from docqa.ingest.detect import MEDIA_TYPES
from docqa.ingest.text import normalize

logging.getLogger("pypdf").setLevel(logging.ERROR)

NEAR_EMPTY_CHARS = 16  # a page with fewer non-space characters (a stamped page number, a stray mark) is read by OCR
_PYPDF_ERRORS = (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, AssertionError,
                 RecursionError, OSError, NotImplementedError, zlib.error)


def parse_pdf(data: bytes, name: str, limits: ParseLimits, *, password: str | None = None,
              ocr_langs: str | None = None, on_ocr: Callable[[int], None] | None = None) -> ParsedDocument:
    """Sections (one per page with text), the page count, the parser used and how OCR went.

    `on_ocr(n)` is told how many pages OCR will read before it starts (the sandbox extends its
    wall-clock limit by that many page allowances)."""
    if b"%%EOF" not in data[-2048:]:
        raise InvalidDocument(f"{name} is a truncated or damaged PDF (it has no end-of-file marker).")
    meta: dict[str, Any] = {}
    fallback: _PypdfFailed | None = None
    try:
        texts = _pypdf_texts(data, name, limits.max_pdf_pages, password)
        parser = "pypdf"
    except _PypdfFailed as failed:
        texts = _pdfium_texts(data, name, limits.max_pdf_pages, password, failed)
        parser, fallback = "pypdfium2", failed
        meta["pypdf_error"] = failed.reason
    if not texts:
        raise InvalidDocument(f"{name} is a PDF with no pages.")
    sections = [ParsedSection(text=t, page=i) for i, t in enumerate(texts, start=1) if t]
    scanned = [i for i, t in enumerate(texts, start=1) if len("".join(t.split())) < NEAR_EMPTY_CHARS]
    if scanned and limits.ocr:
        langs = ocr_langs or limits.ocr_langs
        try:
            langs = ocr_.check_languages(langs)
        except OcrUnavailable as exc:
            if len(scanned) < len(texts):  # a text PDF with a blank page or two: read what has text
                meta["ocr"] = {"pages": [], "skipped": exc.detail}
            else:
                raise InvalidDocument(f"{name} has no extractable text: it looks like scanned images only. "
                                      f"{exc.detail}") from exc
        else:
            if on_ocr is not None:
                on_ocr(len(scanned))
            sections, meta["ocr"] = _with_ocr(data, name, password, texts, scanned, langs, limits)
    if not sections and fallback is not None:  # PDFium opened it but found nothing: pypdf's reason says more
        raise fallback.error
    if not sections:
        why = (", and OCR found none on its pages either" if limits.ocr
               else ": it looks like scanned images only, and OCR is turned off on this server (DOCQA_OCR)")
        raise InvalidDocument(f"{name} has no extractable text{why}.")
    return ParsedDocument("pdf", MEDIA_TYPES["pdf"], sections, n_pages=len(texts), parser=parser, meta=meta)


class _PypdfFailed(Exception):
    def __init__(self, reason: str, error: InvalidDocument) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error  # what to say if the fallback fails too


def _pypdf_texts(data: bytes, name: str, max_pages: int, password: str | None) -> list[str]:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            _decrypt(reader, name, password)
        n_pages = len(reader.pages)
        _check_pages(n_pages, name, max_pages)
        return [normalize(page.extract_text() or "").strip() for page in reader.pages]
    except InvalidDocument:
        raise
    except LimitReachedError as exc:  # a PyPdfError, not a PdfReadError: pypdf's decompression-bomb guard
        raise InvalidDocument(
            f"{name} is a PDF whose compressed content unpacks to more than docqa reads safely; "
            "it may be damaged or built to exhaust memory."
        ) from exc
    except DependencyError as exc:  # a stream needs a decoder pypdf has not got (JBIG2, Brotli): PDFium has more
        raise _PypdfFailed(f"DependencyError: {exc}", InvalidDocument(
            f"{name} uses an encoding docqa cannot decode ({exc}); save it again as a plain PDF and retry."
        )) from exc
    except _PYPDF_ERRORS as exc:
        raise _PypdfFailed(f"{type(exc).__name__}: {str(exc)[:200]}", InvalidDocument(
            f"{name} is a corrupt PDF that cannot be read ({type(exc).__name__})."
        )) from exc


def _decrypt(reader: PdfReader, name: str, password: str | None) -> None:
    """Many PDFs are 'encrypted' with an empty user password only (owner restrictions): try that first."""
    for candidate in ("", password) if password else ("",):
        try:
            if reader.decrypt(candidate):
                return
        except (FileNotDecryptedError, NotImplementedError):
            pass
        except DependencyError as exc:
            raise InvalidDocument(f"{name} is encrypted with a cipher docqa cannot decrypt ({exc}).") from exc
    raise _password_error(name, password)


def _password_error(name: str, password: str | None) -> PasswordRequired:
    if password:
        return PasswordRequired(f"{name} is encrypted, and the password does not open this PDF; "
                                "check the password and upload it again.", password="wrong")
    return PasswordRequired(
        f"{name} is an encrypted PDF that needs a password to open. Send the password with the upload "
        "(the form field 'password', e.g. curl -F file=@doc.pdf -F password=…, or docqa ingest --password); "
        "docqa uses it to read the file and never stores it.", password="required"
    )


def _check_pages(n_pages: int, name: str, max_pages: int) -> None:
    if n_pages > max_pages:
        raise InvalidDocument(f"{name} has {n_pages} pages; docqa reads at most {max_pages} from one PDF.")


def _open_pdfium(data: bytes, name: str, password: str | None) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(data, password=password or None)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise _password_error(name, password) from exc
        raise


def _pdfium_texts(data: bytes, name: str, max_pages: int, password: str | None, failed: _PypdfFailed) -> list[str]:
    try:
        pdf = _open_pdfium(data, name, password)
    except pdfium.PdfiumError as exc:
        raise failed.error from exc
    try:
        _check_pages(len(pdf), name, max_pages)
        texts = []
        for i in range(len(pdf)):
            page = pdf[i]
            textpage = page.get_textpage()
            texts.append(normalize(textpage.get_text_bounded() or "").strip())
            textpage.close()
            page.close()
        return texts
    except pdfium.PdfiumError as exc:
        raise failed.error from exc
    finally:
        pdf.close()


def _within_budget(name: str, done: int, total: int, elapsed: float, budget_s: float) -> None:
    """Refuse the scan once its pace shows that OCR of all `total` pages would pass `budget_s` (judged after
    two pages, or as soon as the budget itself is spent), rather than hours later. Refusing the upload keeps
    nothing half-read: a document cut at the page where time ran out would answer as if it ended there."""
    if done < 2 and elapsed <= budget_s:
        return
    projected = elapsed / max(done, 1) * total
    if projected <= budget_s and elapsed <= budget_s:
        return
    pace = elapsed / max(done, 1)
    raise ParseLimitExceeded(
        f"{name} has {total:,} pages without a text layer; OCR reads about {pace:.1f} s a page here, so all of "
        f"them would take about {_duration(projected)}, more than the {_duration(budget_s)} one upload may spend "
        "on OCR (DOCQA_OCR_BUDGET_S). Split the PDF into smaller files, or upload a version with a text layer."
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


def _with_ocr(data: bytes, name: str, password: str | None, texts: list[str], scanned: list[int], langs: str,
              limits: ParseLimits) -> tuple[list[ParsedSection], dict[str, Any]]:
    """Every page's section, the scanned ones read by OCR, and a summary for the document."""
    started = time.monotonic()
    try:
        pdf = _open_pdfium(data, name, password)
    except pdfium.PdfiumError as exc:
        raise InvalidDocument(f"{name} has pages without text that docqa cannot render for OCR ({exc}).") from exc
    read: dict[int, ocr_.PageText] = {}
    try:
        for done, number in enumerate(scanned):
            _within_budget(name, done, len(scanned), time.monotonic() - started, limits.ocr_budget_s)
            page = pdf[number - 1]
            if ocr_.is_blank(ocr_.render(page, ocr_.PREVIEW_DPI)):  # a cheap look first: blank pages are common
                page.close()
                continue
            image = ocr_.render(page, limits.ocr_dpi)
            page.close()
            result = ocr_.read_image(image, langs, limits.ocr_page_timeout_s)
            result.text = normalize(result.text).strip()
            if len("".join(result.text.split())) > len("".join(texts[number - 1].split())):
                read[number] = result
    except pdfium.PdfiumError as exc:
        raise InvalidDocument(f"{name} has a page docqa cannot render for OCR ({exc}).") from exc
    finally:
        pdf.close()
    sections = []
    for number, text in enumerate(texts, start=1):
        if number in read:
            sections.append(ParsedSection(text=read[number].text, page=number, ocr=True,
                                          ocr_confidence=read[number].confidence))
        elif text:
            sections.append(ParsedSection(text=text, page=number))
    confidences = [r.confidence for r in read.values() if r.confidence is not None]
    summary = {
        "pages": sorted(read), "tried": len(scanned), "langs": langs,
        "seconds": round(time.monotonic() - started, 3),
        "mean_confidence": round(sum(confidences) / len(confidences), 1) if confidences else None,
    }
    return sections, summary
