"""Turn an upload into sections that keep their provenance (page, or path + line range).

`parse_upload` (in parse.py) is pure: bytes in, `ParsedDocument` out, typed errors for bad input.
The service runs it in a separate, resource-limited process (sandbox.py) because the input is
untrusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ParseLimits:
    max_pdf_pages: int = 2000
    max_archive_entries: int = 5000
    max_archive_bytes: int = 200 * 1024 * 1024
    max_archive_ratio: int = 100
    max_archive_file_bytes: int = 2 * 1024 * 1024
    section_max_chars: int = 2000


@dataclass
class ParsedSection:
    text: str
    page: int | None = None
    path: str | None = None
    line_start: int | None = None
    line_end: int | None = None
    token_estimate: int = 0


@dataclass
class ParsedDocument:
    kind: str  # pdf | text | code | archive
    media_type: str
    sections: list[ParsedSection]
    n_pages: int | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)
    peak_rss_bytes: int = 0

    @property
    def n_chars(self) -> int:
        return sum(len(s.text) for s in self.sections)

    @property
    def token_estimate(self) -> int:
        return sum(s.token_estimate for s in self.sections)
