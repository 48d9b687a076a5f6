"""Bytes + filename → ParsedDocument. Pure and synchronous; run it through sandbox.py."""

from __future__ import annotations

from docqa.errors import InvalidDocument
from docqa.ingest import ParsedDocument, ParseLimits
from docqa.ingest.archive import parse_zip
from docqa.ingest.detect import MEDIA_TYPES, detect, text_kind
from docqa.ingest.pdf import parse_pdf
from docqa.ingest.text import decode_text, normalize, split_lines
from docqa.tokens import estimate_tokens


def parse_upload(data: bytes, filename: str, limits: ParseLimits) -> ParsedDocument:
    if not data:
        raise InvalidDocument(f"{filename} is empty.")
    content = detect(data, filename)
    if content == "pdf":
        sections, n_pages = parse_pdf(data, filename, limits.max_pdf_pages)
        doc = ParsedDocument("pdf", MEDIA_TYPES["pdf"], sections, n_pages=n_pages)
    elif content == "zip":
        sections, skipped = parse_zip(data, filename, limits)
        doc = ParsedDocument("archive", MEDIA_TYPES["archive"], sections, skipped=skipped)
    else:
        kind, media_type = text_kind(filename)
        text = normalize(decode_text(data, filename))
        sections = split_lines(text, limits.section_max_chars, markdown=media_type == "text/markdown")
        if not sections:
            raise InvalidDocument(f"{filename} contains only white space.")
        doc = ParsedDocument(kind, media_type, sections)
    for section in doc.sections:
        section.token_estimate = estimate_tokens(section.text)
    return doc
