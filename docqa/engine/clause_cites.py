"""Citations of Word and HTML documents: `[doc.docx §4.2 ¶3] "quote"`.

A section of such a document (see docqa/ingest/outline.py) is a heading's span: `clause` is what
the heading is cited by (its number, else its text) and its text holds paragraphs
`para_start..para_end`, one per line. A citation is verified when its quote occurs in the cited
paragraphs of a section of that clause (`§4.2` alone: anywhere in the clause; `¶2` without a
clause: before the first heading). The file name is optional, as the page form has none.

What it finds is a `ClauseCite`, which citations.py turns into its `Citation` (this module sits
below citations.py and never imports it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from docqa.engine.sources import Document, Section
from docqa.text import squash


@dataclass(frozen=True)
class ClauseCite:
    """A citation of a clause and paragraphs: citations.Citation's fields that such a citation has."""

    document_id: str | None
    filename: str | None
    quote: str | None
    verified: bool
    marker: str
    origin: str = "model"
    clause: str | None = None
    para_start: int | None = None
    para_end: int | None = None

MARKER = re.compile(
    r"\[(?=[^\[\]\n]*[§¶])(?:(?P<file>[^\[\]\n§¶]{1,300}?)[\s,]*)?"
    r"(?:§\s*(?P<clause>[^\[\]\n¶]{1,120}?)[\s,]*)?"
    r"(?:¶\s*(?P<p1>\d+)(?:\s*[-–]\s*¶?\s*(?P<p2>\d+))?)?\s*\]"
)


def marker(doc: Document, sec: Section, para_start: int, para_end: int | None = None) -> str:
    where = f" §{sec.clause}" if sec.clause else ""
    paras = f"¶{para_start}" + (f"-{para_end}" if para_end and para_end != para_start else "")
    return f"[{sec.path or doc.filename}{where} {paras}]"


def _same_clause(a: str | None, b: str | None) -> bool:
    def key(c: str | None) -> str:
        return " ".join((c or "").casefold().rstrip(".)").split())
    return key(a) == key(b)


def check(m: re.Match[str], quote: str | None, sources: list[tuple[Document, list[Section]]]) -> ClauseCite:
    name = (m.group("file") or "").strip()
    clause = (m.group("clause") or "").strip() or None
    p1 = int(m.group("p1")) if m.group("p1") else None
    p2 = int(m.group("p2")) if m.group("p2") else p1
    # the name is the document's, or an e-mail attachment's (its sections' path)
    named = [(d, ss) for d, ss in sources if name and (d.filename == name or d.filename.endswith("/" + name))]
    if name and not named:
        named = [(d, [s for s in ss if s.path and (s.path == name or s.path.endswith("/" + name))])
                 for d, ss in sources]
        named = [(d, ss) for d, ss in named if ss]
    first: Document | None = None
    for doc, sections in named or sources:
        for sec in sections:
            if sec.para_start is None or sec.para_end is None or not _same_clause(sec.clause, clause):
                continue
            lines = sec.text.split("\n")
            lo, hi = (0, len(lines)) if p1 is None or p2 is None else \
                (max(p1, sec.para_start) - sec.para_start, min(p2, sec.para_end) - sec.para_start + 1)
            if hi <= lo:
                continue
            first = first or doc
            if quote and squash(quote) and squash(quote) in squash(" ".join(lines[lo:hi])):
                return ClauseCite(doc.id, doc.filename, quote, True, m.group(0), clause=sec.clause, para_start=p1,
                                  para_end=p2)
    return ClauseCite(first.id if first else None, first.filename if first else None, quote, False, m.group(0),
                      clause=clause, para_start=p1, para_end=p2)


def matched(doc: Document, sec: Section, quote: str) -> ClauseCite:
    """A citation docqa found itself (citations.attribute): the paragraph that holds `quote`."""
    offset = sec.text[: sec.text.find(quote)].count("\n") if quote in sec.text else 0
    para = (sec.para_start or 1) + offset
    return ClauseCite(doc.id, doc.filename, quote, True, marker(doc, sec, para), "matched", clause=sec.clause,
                      para_start=para, para_end=para)
