"""Find citations in an answer and check each quote against the stored source text.

When the model cites nothing (small models rarely follow the format), `attribute()` finds the
source sentence that best supports each sentence of the answer, by word overlap, and cites it
with origin "matched"; its quote is copied from the source, so it is verified by construction.

Accepted forms: `[p. 3]`, `[page 3]`, `[report.pdf p. 3]` (a PDF attached to an e-mail),
`[file.py:L10-L20]`, `[file.py:L10]`, and for Word and HTML
documents `[doc.docx §4.2 ¶3]` (clause and paragraph; `¶3-5` a range, `[doc.docx §4.2]` the whole
clause, `[doc.docx ¶2]` before the first heading), with a quote in straight or curly double quotes
right before or after the marker. A citation is *verified* only when its quote occurs (ignoring
case, spacing and quote styles) in the cited page, line range or paragraphs.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from docqa.engine import clause_cites
from docqa.engine.sources import Document, Section
from docqa.text import squash

_MARKER = re.compile(
    r"\[(?:(?:(?P<pfile>[^\[\]\n:§¶]{1,300}?)[\s,]+)?p(?:age)?\.?\s*(?P<page>\d+)|(?P<path>[^\[\]\n:]{1,300}):L(?P<start>\d+)(?:\s*-\s*L?(?P<end>\d+))?)\]",
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
    origin: str = "model"  # model | matched
    clause: str | None = None  # Word/HTML: the cited heading (§4.2) and paragraphs (¶3) within it
    para_start: int | None = None
    para_end: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _of_clause(c: clause_cites.ClauseCite) -> Citation:
    return Citation(c.document_id, c.filename, None, None, None, None, c.quote, c.verified, c.marker, c.origin,
                    clause=c.clause, para_start=c.para_start, para_end=c.para_end)


def extract_citations(answer: str, sources: list[tuple[Document, list[Section]]]) -> list[Citation]:
    out: list[Citation] = []
    seen: set[tuple[Any, ...]] = set()
    for m in _markers(answer):
        quote = _nearby_quote(answer, m.start(), m.end())
        if m.re is clause_cites.MARKER:
            cit = _of_clause(clause_cites.check(m, quote, sources))
        elif m.group("page"):
            cit = _check_page(int(m.group("page")), quote, sources, m.group(0), m.group("pfile"))
        else:
            start = int(m.group("start"))
            end = int(m.group("end") or start)
            cit = _check_lines(m.group("path").strip(), start, end, quote, sources, m.group(0))
        key = (cit.document_id, cit.page, cit.path, cit.line_start, cit.line_end, cit.clause, cit.para_start,
               cit.para_end, cit.quote)
        if key not in seen:
            seen.add(key)
            out.append(cit)
    return out


def _nearby_quote(answer: str, start: int, end: int) -> str | None:
    """The quote that goes with the marker at answer[start:end]. The instructed form is marker then
    quote, so a quote right after the marker wins; but when that quote is itself followed by a
    marker (`"a" [p. 1] "b" [p. 2]`), the answer quotes before its markers and the one before wins."""
    line_start = answer.rfind("\n", 0, start) + 1
    line_end = answer.find("\n", end)
    tail = answer[end: line_end if line_end != -1 else len(answer)]
    before = _QUOTE_BEFORE.search(answer[line_start:start])
    after = _QUOTE_AFTER.search(tail)
    rest = tail[after.end():].lstrip(" \t,.;:—–-") if after else ""
    if after and not (before and (_MARKER.match(rest) or clause_cites.MARKER.match(rest))):
        return after.group(1).strip()
    if before:
        return before.group(1).strip()
    return after.group(1).strip() if after else None


def _markers(answer: str) -> list[re.Match[str]]:
    return sorted([*_MARKER.finditer(answer), *clause_cites.MARKER.finditer(answer)], key=lambda m: m.start())


def _contains(haystack: str, quote: str | None) -> bool:
    return quote is not None and bool(quote) and squash(quote) in squash(haystack)


def _check_page(page: int, quote: str | None, sources: list[tuple[Document, list[Section]]], marker: str,
                named: str | None = None) -> Citation:
    """`[p. 3]`, or `[report.pdf p. 3]` for a PDF attached to an e-mail (its sections' path): a name
    that is no attachment's is read as no name at all ("[see p. 3]")."""
    name = (named or "").split("›")[-1].strip()
    pages = [(doc, s) for doc, sections in sources for s in sections if s.page == page]
    if name and any(_names(doc, s, name) for doc, s in pages):
        pages = [(doc, s) for doc, s in pages if _names(doc, s, name)]
    first: Document | None = None
    for doc, s in pages:
        first = first or doc
        if _contains(s.text, quote):
            return Citation(doc.id, doc.filename, page, s.path, None, None, quote, True, marker)
    path = pages[0][1].path if pages else None
    return Citation(first.id if first else None, first.filename if first else None, page, path, None, None,
                    quote, False, marker)


def _names(doc: Document, section: Section, name: str) -> bool:
    """Whether `name` is the section's file: its path (an attachment), or its document's name."""
    spath = section.path or doc.filename
    return spath == name or spath.endswith("/" + name) or (section.path is None and doc.filename.endswith(name))


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
            if _in_lines(lines, lo, hi, quote):
                return Citation(doc.id, doc.filename, None, path, start, end, quote, True, marker)
    return Citation(first.id if first else None, first.filename if first else None, None, path, start, end,
                    quote, False, marker)


def _in_lines(lines: list[str], lo: int, hi: int, quote: str | None) -> bool:
    """Whether `quote` occurs in lines[lo:hi], or runs into or out of that range across a line
    break (a quote has no line breaks, but the source text it copies may)."""
    q = squash(quote or "")
    if not q:
        return False
    inside = squash("\n".join(lines[lo:hi]))
    if q in inside:
        return True
    starts = squash("\n".join(lines[lo:])).find(q)  # first occurrence from the range's first line on
    if 0 <= starts < len(inside):
        return True
    ends = squash("\n".join(lines[:hi])).rfind(q)  # last occurrence up to the range's last line
    return ends >= 0 and ends + len(q) > len(squash("\n".join(lines[:lo]))) + 1


_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE = re.compile(r"[^.!?。؟\n]+[.!?。؟]?")
_STOP = frozenset([
    "the", "a", "an", "of", "to", "in", "on", "and", "or", "is", "are", "was", "were", "be", "by", "for", "with",
    "as", "at", "that", "this", "it", "its", "from",
])


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.casefold()) if w not in _STOP}


def attribute(answer: str, sources: list[tuple[Document, list[Section]]], threshold: float = 0.6,
              limit: int = 3) -> list[Citation]:
    """Cite, for each answer sentence, the source sentence sharing most of its words."""
    out: list[Citation] = []
    seen: set[tuple[int | None, int]] = set()
    for sentence in _SENTENCE.findall(answer):
        want = _words(sentence)
        if len(want) < 2:
            continue
        best: tuple[float, Document, Section, str] | None = None
        for doc, sections in sources:
            for sec in sections:
                if len(want & _words(sec.text)) / len(want) < threshold:
                    continue
                for cand in _SENTENCE.findall(sec.text):
                    have = _words(cand)
                    score = len(want & have) / len(want | have) if have else 0.0
                    if best is None or score > best[0]:
                        best = (score, doc, sec, cand.strip())
        if best is None or best[0] < threshold / 2 or (best[2].id, hash(best[3])) in seen:
            continue
        _, doc, sec, quote = best
        seen.add((sec.id, hash(quote)))
        out.append(_matched(doc, sec, quote))
        if len(out) >= limit:
            break
    return out


def _matched(doc: Document, sec: Section, quote: str) -> Citation:
    if sec.para_start is not None:
        return _of_clause(clause_cites.matched(doc, sec, quote))
    if sec.page is not None:
        marker = f"[{sec.path} p. {sec.page}]" if sec.path else f"[p. {sec.page}]"
        return Citation(doc.id, doc.filename, sec.page, sec.path, None, None, quote, True, marker, "matched")
    offset = sec.text[: sec.text.find(quote)].count("\n") if quote in sec.text else 0
    line = (sec.line_start or 1) + offset
    path = sec.path or doc.filename
    return Citation(doc.id, doc.filename, None, path, line, line, quote, True, f"[{path}:L{line}]", "matched")


def verbatim_spans(text: str, source: str, min_chars: int = 12) -> list[str]:
    """The quoted strings and sentences of `text` that occur word for word in `source`
    (ignoring case, spacing and quote marks): model output that is really evidence."""
    target = squash(source)
    candidates = [m.group(1) for m in re.finditer(_QUOTE, text)] + _SENTENCE.findall(text)
    out: list[str] = []
    for cand in candidates:
        cand = cand.strip()
        key = squash(cand)
        if len(key) >= min_chars and key in target and not any(key in squash(o) for o in out):
            out.append(cand)
    return out
