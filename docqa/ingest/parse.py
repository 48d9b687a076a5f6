"""Bytes + filename → ParsedDocument. Pure and synchronous; run it through sandbox.py."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from docqa.errors import InvalidDocument, UnsupportedDocument
from docqa.ingest import ParsedDocument, ParseLimits
from docqa.ingest.archive import parse_zip
from docqa.ingest.detect import MEDIA_TYPES, detect, extension_kind, text_kind
from docqa.ingest.docx import parse_docx
from docqa.ingest.html import parse_html
from docqa.ingest.legal import legal_flavour, parse_legal_xml
from docqa.ingest.mail import MAX_DEPTH, parse_mail
from docqa.ingest.odt import parse_odt
from docqa.ingest.pdf import parse_pdf
from docqa.ingest.rtf import parse_rtf
from docqa.ingest.sheet import parse_sheet
from docqa.ingest.tarball import MEDIA_TYPES as TAR_MEDIA_TYPES
from docqa.ingest.tarball import compression, parse_tar
from docqa.ingest.text import decode_text, normalize, split_lines
from docqa.tokens import estimate_tokens


def parse_upload(data: bytes, filename: str, limits: ParseLimits, *, password: str | None = None,
                 ocr_langs: str | None = None, on_ocr: Callable[[int], None] | None = None) -> ParsedDocument:
    """`password` opens an encrypted PDF; `ocr_langs` overrides `limits.ocr_langs` for this upload;
    `on_ocr(n)` hears how many pages OCR is about to read."""
    doc = _parse(data, filename, limits, password=password, ocr_langs=ocr_langs, on_ocr=on_ocr)
    for section in doc.sections:
        section.token_estimate = estimate_tokens(section.text)
    return doc


def _parse(data: bytes, filename: str, limits: ParseLimits, *, password: str | None = None,
           ocr_langs: str | None = None, on_ocr: Callable[[int], None] | None = None,
           depth: int = 0) -> ParsedDocument:
    """One upload, or one attachment of an e-mail (`depth` > 0: its own readers, no password)."""
    if not data:
        raise InvalidDocument(f"{filename} is empty.")
    content = detect(data, filename)
    if content == "pdf":
        return parse_pdf(data, filename, limits, password=password, ocr_langs=ocr_langs, on_ocr=on_ocr)
    if content == "docx":
        return parse_docx(data, filename, limits)
    if content == "html":
        return parse_html(data, filename, limits)
    if content == "zip":
        sections, skipped = parse_zip(data, filename, limits)
        return ParsedDocument("archive", MEDIA_TYPES["archive"], sections, skipped=skipped, parser="zipfile")
    if content == "tar":
        sections, skipped = parse_tar(data, filename, limits)
        return ParsedDocument("archive", TAR_MEDIA_TYPES[compression(data)], sections, skipped=skipped,
                              parser="tarfile")
    if content == "odt":
        return parse_odt(data, filename, limits)
    if content == "rtf":
        return parse_rtf(data, filename, limits)
    if content == "sheet":
        return parse_sheet(data, filename, extension_kind(filename)[1], limits)
    if content in ("email", "mbox"):
        if depth >= MAX_DEPTH:
            raise UnsupportedDocument(f"{filename} is a message attached inside messages nested too deeply.")
        attachment = partial(_attachment, limits=limits, ocr_langs=ocr_langs, on_ocr=on_ocr, depth=depth + 1)
        return parse_mail(data, filename, limits, attachment, mbox=content == "mbox")
    flavour = legal_flavour(data) if filename.lower().endswith((".xml", ".akn")) else None
    if flavour is not None:  # USLM or Akoma Ntoso: by its structure; any other XML is code
        return parse_legal_xml(data, filename, limits, flavour)
    kind, media_type = text_kind(filename)
    text = normalize(decode_text(data, filename))
    sections = split_lines(text, limits.section_max_chars, markdown=media_type == "text/markdown")
    if not sections:
        raise InvalidDocument(f"{filename} contains only white space.")
    return ParsedDocument(kind, media_type, sections, parser="text")


def _attachment(data: bytes, filename: str, *, limits: ParseLimits, ocr_langs: str | None,
                on_ocr: Callable[[int], None] | None, depth: int) -> ParsedDocument:
    return _parse(data, filename, limits, ocr_langs=ocr_langs, on_ocr=on_ocr, depth=depth)
