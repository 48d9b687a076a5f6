"""Turn an upload into sections that keep their provenance (page, path + line range, or a Word/HTML
heading's clause + paragraph range).

`parse_upload` (in parse.py) is pure: bytes in, `ParsedDocument` out, typed errors for bad input.
The service runs it in a separate, resource-limited process (sandbox.py) because the input is
untrusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ParseLimits:
    max_pdf_pages: int = 2000
    max_archive_entries: int = 5000
    max_archive_bytes: int = 200 * 1024 * 1024
    max_archive_ratio: int = 100
    max_archive_file_bytes: int = 2 * 1024 * 1024
    section_max_chars: int = 2000
    ocr: bool = True
    ocr_langs: str = "eng+ara"
    ocr_page_timeout_s: float = 20.0
    ocr_budget_s: float = 600.0  # all of one upload's OCR, however many pages it has
    ocr_dpi: int = 300


@dataclass
class ParsedSection:
    text: str
    page: int | None = None
    path: str | None = None
    line_start: int | None = None
    line_end: int | None = None
    token_estimate: int = 0
    # Word and HTML: the heading path ("4 Termination › 4.2 Notice"), the clause it cites as (§4.2) and
    # the 1-based paragraph numbers of the heading's span that this section holds, one per text line
    heading: str | None = None
    clause: str | None = None
    para_start: int | None = None
    para_end: int | None = None
    # PDF pages read by OCR, not from a text layer: Tesseract's mean word confidence (0-100)
    ocr: bool = False
    ocr_confidence: float | None = None


@dataclass
class ParsedDocument:
    kind: str  # pdf | text | code | archive | docx | html
    media_type: str
    sections: list[ParsedSection]
    n_pages: int | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)
    peak_rss_bytes: int = 0
    parser: str = ""  # the library that produced the sections: pypdf, pypdfium2, python-docx, beautifulsoup4 …
    # facts about how it was read: {"ocr": {"pages": [..], "langs", "seconds", "mean_confidence"},
    # "revisions": true, "pypdf_error": "…"}
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_chars(self) -> int:
        return sum(len(s.text) for s in self.sections)

    @property
    def token_estimate(self) -> int:
        return sum(s.token_estimate for s in self.sections)
