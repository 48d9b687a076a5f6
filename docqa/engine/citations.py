"""Find citations in an answer and check each quote against the stored source text.

Accepted forms: `[p. 3]`, `[page 3]`, `[file.py:L10-L20]`, `[file.py:L10]`, with a quote in
straight or curly double quotes right before or after the marker. A citation is *verified* only
when its quote occurs (ignoring case, spacing and quote styles) in the cited page or line range.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

from docqa.store.models import Document, Section

_MARKER = re.compile(
    r"\[(?:p(?:age)?\.?\s*(?P<page>\d+)|(?P<path>[^\[\]\n:]{1,300}):L(?P<start>\d+)(?:\s*-\s*L?(?P<end>\d+))?)\]",
    re.IGNORECASE,
)
_QUOTE = r"[\"“”«»]([^\"“”«»\n]{3,400})[\"“”«»]"
_QUOTE_BEFORE = re.compile(_QUOTE + r"[\s,.;:—–-]*$")
_QUOTE_AFTER = re.compile(r"^[\s,.;:—–-]*" + _QUOTE)


@dataclass
class Citation:
    document_id: str | None
    filename: str | None
    page: int | None
    path: str | None
    line_start: int | None
    line_end: int | None
    quote: str | None
    verified: bool
    marker: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def squash(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[\"“”«»'‘’`]", "", text)
    return re.sub(r"\s+", " ", text).strip()


def extract_citations(answer: str, sources: list[tuple[Document, list[Section]]]) -> list[Citation]:
    out: list[Citation] = []
    seen: set[tuple[Any, ...]] = set()
    for m in _MARKER.finditer(answer):
        quote = _nearby_quote(answer, m.start(), m.end())
        if m.group("page"):
            cit = _check_page(int(m.group("page")), quote, sources, m.group(0))
        else:
            start = int(m.group("start"))
            end = int(m.group("end") or start)
            cit = _check_lines(m.group("path").strip(), start, end, quote, sources, m.group(0))
        key = (cit.document_id, cit.page, cit.path, cit.line_start, cit.line_end, cit.quote)
        if key not in seen:
            seen.add(key)
            out.append(cit)
    return out


def _nearby_quote(answer: str, start: int, end: int) -> str | None:
    line_start = answer.rfind("\n", 0, start) + 1
    before = _QUOTE_BEFORE.search(answer[line_start:start])
    if before:
        return before.group(1).strip()
    line_end = answer.find("\n", end)
    after = _QUOTE_AFTER.search(answer[end: line_end if line_end != -1 else len(answer)])
    return after.group(1).strip() if after else None


def _contains(haystack: str, quote: str | None) -> bool:
    return bool(quote) and squash(quote) in squash(haystack)


def _check_page(page: int, quote: str | None, sources: list[tuple[Document, list[Section]]], marker: str) -> Citation:
    first: Document | None = None
    for doc, sections in sources:
        for s in sections:
            if s.page == page:
                first = first or doc
                if _contains(s.text, quote):
                    return Citation(doc.id, doc.filename, page, None, None, None, quote, True, marker)
    return Citation(first.id if first else None, first.filename if first else None, page, None, None, None,
                    quote, False, marker)


def _check_lines(path: str, start: int, end: int, quote: str | None,
                 sources: list[tuple[Document, list[Section]]], marker: str) -> Citation:
    first: Document | None = None
    for doc, sections in sources:
        for s in sections:
            spath = s.path or doc.filename
            if spath != path and not spath.endswith("/" + path) or s.line_start is None or s.line_end is None:
                continue
            if s.line_end < start or s.line_start > end:
                continue
            first = first or doc
            lines = s.text.split("\n")
            lo = max(start, s.line_start) - s.line_start
            hi = min(end, s.line_end) - s.line_start + 1
            if _contains("\n".join(lines[lo:hi]), quote) or _contains(s.text, quote):
                return Citation(doc.id, doc.filename, None, path, start, end, quote, True, marker)
    return Citation(first.id if first else None, first.filename if first else None, None, path, start, end,
                    quote, False, marker)
