"""PDF text per page with pypdf; the page number (1-based) is the provenance."""

from __future__ import annotations

import io
import logging
import zlib

from pypdf import PdfReader
from pypdf.errors import (
    DependencyError,
    FileNotDecryptedError,
    LimitReachedError,
    PyPdfError,
)

from docqa.errors import InvalidDocument
from docqa.ingest import ParsedSection
from docqa.ingest.text import normalize

logging.getLogger("pypdf").setLevel(logging.ERROR)


def parse_pdf(data: bytes, name: str, max_pages: int) -> tuple[list[ParsedSection], int]:
    """Sections (one per page with text) and the page count."""
    if b"%%EOF" not in data[-2048:]:
        raise InvalidDocument(f"{name} is a truncated or damaged PDF (it has no end-of-file marker).")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not _try_empty_password(reader):
            raise InvalidDocument(
                f"{name} is an encrypted PDF that needs a password to open. "
                "Remove the password (e.g. print to PDF) and upload it again."
            )
        n_pages = len(reader.pages)
        if n_pages > max_pages:
            raise InvalidDocument(f"{name} has {n_pages} pages; docqa reads at most {max_pages} from one PDF.")
        sections = []
        for number, page in enumerate(reader.pages, start=1):
            text = normalize(page.extract_text() or "").strip()
            if text:
                sections.append(ParsedSection(text=text, page=number))
    except InvalidDocument:
        raise
    except LimitReachedError as exc:  # a PyPdfError, not a PdfReadError: pypdf's decompression-bomb guard
        raise InvalidDocument(
            f"{name} is a PDF whose compressed content unpacks to more than docqa reads safely; "
            "it may be damaged or built to exhaust memory."
        ) from exc
    except DependencyError as exc:  # a stream needs a decoder pypdf has not got (JBIG2, Brotli)
        raise InvalidDocument(
            f"{name} uses an encoding docqa cannot decode ({exc}); save it again as a plain PDF and retry."
        ) from exc
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, AssertionError,
            RecursionError, OSError, NotImplementedError, zlib.error) as exc:
        raise InvalidDocument(f"{name} is a corrupt PDF that cannot be read ({type(exc).__name__}).") from exc
    if n_pages == 0:
        raise InvalidDocument(f"{name} is a PDF with no pages.")
    if not sections:
        raise InvalidDocument(
            f"{name} has no extractable text: it looks like scanned images only. "
            "docqa does not run OCR yet; upload a PDF with a text layer."
        )
    return sections, n_pages


def _try_empty_password(reader: PdfReader) -> bool:
    """Many PDFs are 'encrypted' with an empty user password only (owner restrictions)."""
    try:
        return bool(reader.decrypt(""))
    except (FileNotDecryptedError, DependencyError, NotImplementedError):
        return False
