"""Bytes + filename → ParsedDocument. Pure and synchronous; run it through sandbox.py."""

from __future__ import annotations

from collections.abc import Callable

from docqa.errors import InvalidDocument
from docqa.ingest import ParsedDocument, ParseLimits
from docqa.ingest.archive import parse_zip
from docqa.ingest.detect import MEDIA_TYPES, detect, text_kind
from docqa.ingest.docx import parse_docx
from docqa.ingest.html import parse_html
from docqa.ingest.pdf import parse_pdf
from docqa.ingest.tarball import MEDIA_TYPES as TAR_MEDIA_TYPES
from docqa.ingest.tarball import compression, parse_tar
from docqa.ingest.text import decode_text, normalize, split_lines
from docqa.tokens import estimate_tokens


def parse_upload(data: bytes, filename: str, limits: ParseLimits, *, password: str | None = None,
                 ocr_langs: str | None = None, on_ocr: Callable[[int], None] | None = None) -> ParsedDocument:
    """`password` opens an encrypted PDF; `ocr_langs` overrides `limits.ocr_langs` for this upload;
    `on_ocr(n)` hears how many pages OCR is about to read."""
    if not data:
        raise InvalidDocument(f"{filename} is empty.")
    content = detect(data, filename)
    if content == "pdf":
        doc = parse_pdf(data, filename, limits, password=password, ocr_langs=ocr_langs, on_ocr=on_ocr)
    elif content == "docx":
        doc = parse_docx(data, filename, limits)
    elif content == "html":
        doc = parse_html(data, filename, limits)
    elif content == "zip":
        sections, skipped = parse_zip(data, filename, limits)
        doc = ParsedDocument("archive", MEDIA_TYPES["archive"], sections, skipped=skipped, parser="zipfile")
    elif content == "tar":
        sections, skipped = parse_tar(data, filename, limits)
        doc = ParsedDocument("archive", TAR_MEDIA_TYPES[compression(data)], sections, skipped=skipped,
                             parser="tarfile")
    else:
        kind, media_type = text_kind(filename)
        text = normalize(decode_text(data, filename))
        sections = split_lines(text, limits.section_max_chars, markdown=media_type == "text/markdown")
        if not sections:
            raise InvalidDocument(f"{filename} contains only white space.")
        doc = ParsedDocument(kind, media_type, sections, parser="text")
    for section in doc.sections:
        section.token_estimate = estimate_tokens(section.text)
    return doc
