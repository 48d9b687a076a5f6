"""Cut a document set into chunks for map-reduce mode.

Chunks are cut at section boundaries (a page, or a range of lines) and overlap by whole sections
up to `overlap` tokens, so a passage that straddles a boundary is seen whole at least once. A
single section larger than a chunk is split by lines, keeping page/line provenance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from docqa.engine.sources import Document, Section


@dataclass(frozen=True)
class Part:
    """A section, or a line-range slice of one, ready to render."""

    document: Document
    section: Section
    text: str
    line_start: int | None
    line_end: int | None
    n_tokens: int


def parts_of(sources: list[tuple[Document, list[Section]]], count: Callable[[str], int], limit: int) -> list[Part]:
    parts: list[Part] = []
    for doc, sections in sources:
        for s in sections:
            n = count(s.text)
            if n <= limit:
                parts.append(Part(doc, s, s.text, *_span(s), n))
            else:
                parts.extend(_split(doc, s, count, limit))
    return parts


def _split(doc: Document, s: Section, count: Callable[[str], int], limit: int) -> list[Part]:
    lines = s.text.split("\n")
    out: list[Part] = []
    start = 0
    while start < len(lines):
        end = start + 1
        while end < len(lines) and count("\n".join(lines[start : end + 1])) <= limit:
            end += 1
        text = "\n".join(lines[start:end])
        if count(text) > limit:  # one enormous line: cut by characters
            for piece in _cut(text, count, limit):
                out.append(Part(doc, s, piece, _line(s, start), _line(s, end - 1), count(piece)))
        else:
            out.append(Part(doc, s, text, _line(s, start), _line(s, end - 1), count(text)))
        start = end
    return out


def _cut(text: str, count: Callable[[str], int], limit: int) -> list[str]:
    """Consecutive slices of `text`, each of at most `limit` tokens (a slice is shrunk until it fits:
    token density varies along a line, so an even cut can overshoot)."""
    pieces: list[str] = []
    step = max(1, len(text) * limit // max(count(text), 1))
    i = 0
    while i < len(text):
        n = min(step, len(text) - i)
        while n > 1:
            c = count(text[i : i + n])
            if c <= limit:
                break
            n = min(n - 1, max(1, n * limit // c))
        pieces.append(text[i : i + n])
        i += n
    return pieces


def _span(s: Section) -> tuple[int | None, int | None]:
    """A whole section's first and last line (text files) or paragraph (Word, HTML)."""
    if s.line_start is not None:
        return s.line_start, s.line_end
    return s.para_start, s.para_end


def _line(s: Section, offset: int) -> int | None:
    """The line (text files) or paragraph (Word, HTML: one per text line) `offset` lines into `s`."""
    if s.line_start is not None:
        return s.line_start + offset
    return s.para_start + offset if s.para_start is not None else None


def pack(parts: list[Part], budget: int, overlap: int) -> list[list[Part]]:
    """Greedy packing into chunks of at most `budget` tokens; each chunk after the first starts
    with the trailing parts of the previous one, up to `overlap` tokens."""
    chunks: list[list[Part]] = []
    current: list[Part] = []
    size = 0
    fresh = False
    for part in parts:
        if current and size + part.n_tokens > budget:
            chunks.append(current)
            carried: list[Part] = []
            carried_size = 0
            for prev in reversed(current):
                if carried_size + prev.n_tokens > overlap or carried_size + prev.n_tokens + part.n_tokens > budget:
                    break
                carried.insert(0, prev)
                carried_size += prev.n_tokens
            current, size, fresh = carried, carried_size, False
        current.append(part)
        size += part.n_tokens
        fresh = True
    if current and fresh:
        chunks.append(current)
    return chunks
