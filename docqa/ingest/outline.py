"""Sections of a document with headings (Word, HTML): one per heading's span.

Each section carries its heading path ("4 Termination › 4.2 Notice"), the clause it is cited by
(`§4.2`: the heading's number, or its text when it has none) and the paragraph numbers it holds.
Paragraphs are numbered from 1 within their heading's span; a table row counts as one paragraph.
The section text has one paragraph per line, so line k of a section is paragraph
`para_start + k`. A span longer than `max_chars` is cut into several sections that share the
heading and continue the numbering. Paragraphs before the first heading form a span without a
clause (cited as `[doc.docx ¶2]`).
"""

from __future__ import annotations

import re

from docqa.ingest import ParsedSection

PATH_SEPARATOR = " › "
# "4", "4.2", "4.2.1.", "(3)"; a letter or Roman numeral only with its dot or bracket ("B.", "IV)"),
# so that a heading "A Note on Fees" is cited by its text, not as §A
_NUMBER = re.compile(r"^\(?(\d+(?:\.\d+)*)[.)]?(?=\s|$)|^\(?([A-Z]|[IVXLC]+)[.)](?=\s|$)")
MAX_CLAUSE = 80


def clause_of(label: str | None, heading: str) -> str:
    """What a heading is cited by: its number ("4.2"), else its text."""
    for candidate in (label or "", heading):
        m = _NUMBER.match(candidate.strip())
        if m:
            return m.group(1) or m.group(2)
    text = " ".join(heading.replace("[", "(").replace("]", ")").replace("¶", "").split())
    return text[:MAX_CLAUSE]


class Outline:
    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.sections: list[ParsedSection] = []
        self._stack: list[tuple[int, str]] = []  # (level, "4.2 Notice")
        self._clause: str | None = None
        self._lines: list[str] = []
        self._para = 0  # paragraphs of the current span so far
        self._size = 0

    def heading(self, level: int, text: str, label: str | None = None, clause: str | None = None) -> None:
        """`clause`, when given, is what the span is cited by (legal XML: "3(a)"), else its number or text."""
        text = " ".join(text.split())
        if not text:
            return
        self._flush()
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, f"{label} {text}" if label and not text.startswith(label) else text))
        self._clause = clause[:MAX_CLAUSE] if clause else clause_of(label, text)
        self._para = 0

    def paragraph(self, text: str) -> None:
        text = " ".join(text.split())
        if not text:
            return
        if self._lines and self._size + len(text) + 1 > self.max_chars:
            self._flush()
        self._lines.append(text)
        self._size += len(text) + 1
        self._para += 1

    def finish(self) -> list[ParsedSection]:
        self._flush()
        return self.sections

    def _flush(self) -> None:
        if not self._lines:
            return
        first = self._para - len(self._lines) + 1
        self.sections.append(ParsedSection(
            text="\n".join(self._lines),
            heading=PATH_SEPARATOR.join(t for _, t in self._stack) or None,
            clause=self._clause if self._stack else None,
            para_start=first, para_end=self._para,
        ))
        self._lines, self._size = [], 0
