"""Passages: the sentences of the documents, rebuilt across line wraps, hyphenation and page breaks.

A document's sections are cut for the prompt (whole lines, about 2,000 characters, or one PDF page),
and hard-wrapped prose puts a sentence on two or three physical lines. Grounding and search need
the *sentence*: what a reader checks a claim against, and what the model is shown next to the
question. So the sections of one document (one file of a zip) are read again as one stream of
lines, in order:

- a blank line, a heading line or a list item (`-`, `*`, `1.`, `(a)`, `a)`) ends a block;
  sections that are not contiguous (a gap of lines) are a block break too; a page break is not
  (a sentence may run on to the next page), but a bare page number at a page's edge is dropped;
- inside a block, lines are joined with a space; a word split by a hyphen at a line's end is
  joined again ("adip-" + "iscing" -> "adipiscing"; "non-" + "exclusive" keeps its hyphen);
- a block is cut into sentences (". " before a capital or digit; not after "e.g.", "No.", "4.5"),
  a sentence of more than 60 words into its clauses at "; ";
- each passage keeps where it is: its first and last physical line (text, code), or its first and
  last page (PDF).

A *heading* (a Markdown `#` line, a line underlined with `===`/`---`, a short line standing alone
without a full stop, or a line in capitals) is a passage of its own, marked `heading`: it never
supports a claim. In a code file, comment lines (`#`, `//`, `/* */`, `*`, `--`) and Python
docstrings are prose blocks; every other line is a passage of its own. In Word and HTML documents
every line is a paragraph already: a block of its own.

Besides every single sentence, each two adjacent sentences (not headings) of one stream are a
passage too (`pair`): two sentences may support one claim together.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from docqa.engine.sources import Document, Section

MAX_SENTENCE_WORDS = 60  # longer sentences are cut into their clauses at "; "


def _split(words: str) -> list[str]:
    return words.split()


@dataclass
class Passage:
    """A sentence (or two adjacent ones) of a document, with where it is."""

    document_id: str | None
    filename: str | None
    page: int | None
    path: str | None
    line_start: int | None
    line_end: int | None
    text: str
    chunk: int | None = None  # chunked mode: the chunk whose map step quoted it
    pair: bool = False  # two adjacent sentences: tried only when no single sentence holds the claim
    page_end: int | None = None  # a PDF sentence that runs on to the next page: its last page
    heading: bool = False  # a heading: shown, never support

    def location(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("text", "pair", "heading", "page_end")}
        if self.page_end is not None and self.page_end != self.page:
            out["page_end"] = self.page_end
        return out


@dataclass
class _Line:
    text: str
    line: int | None
    page: int | None


_CODE_EXTENSIONS = frozenset(
    _split(
        "c h cc cpp hpp cxx hxx cs java kt kts scala go rs py pyi rb pl pm php js mjs cjs ts tsx "
        "jsx swift m mm sh bash zsh fish ps1 lua r sql el clj ex exs erl hs ml mli fs vb dart "
        "groovy gradle cmake mk"))
_CODE_NAMES = frozenset(["makefile", "dockerfile", "cmakelists.txt", "rakefile", "gemfile"])


def is_code(doc: Document, path: str | None) -> bool:
    name = (path or doc.filename or "").rsplit("/", 1)[-1].lower()
    if "." in name:
        return name.rsplit(".", 1)[1] in _CODE_EXTENSIONS
    return name in _CODE_NAMES or (path is None and doc.kind == "code")


def passages(sources: Iterable[tuple[Document, Sequence[Section]]]) -> list[Passage]:
    """Every sentence of every document, then (for each stream) each pair of adjacent sentences."""
    out: list[Passage] = []
    for doc, sections in sources:
        for path, lines, paragraphs in _streams(doc, sections):
            markdown = (path or doc.filename or "").lower().endswith((".md", ".markdown", ".rst")) or \
                doc.media_type == "text/markdown"
            out += _stream_passages(doc, path, lines, code=is_code(doc, path), paragraphs=paragraphs,
                                    markdown=markdown)
    return out


def section_passages(document_id: str | None, filename: str | None, sec: Section) -> list[Passage]:
    """The passages of one section read alone (a quote's place in chunked mode)."""
    doc = Document(document_id, filename or "")
    return passages([(doc, [sec])])


# -- streams: a document's sections read again as one run of lines per file ---------------------------

_PAGE_NUMBER = re.compile(r"^\s*(?:[-–—]\s*)?(?:page\s+)?\d{1,4}(?:\s*(?:of|/)\s*\d{1,4})?(?:\s*[-–—])?\s*$", re.I)


def _streams(doc: Document, sections: Sequence[Section]) -> list[tuple[str | None, list[_Line], bool]]:
    """(path, lines, paragraphs): the sections of each file in order, a blank line where lines are missing
    between two sections; `paragraphs`: Word/HTML, one paragraph per line."""
    out: list[tuple[str | None, list[_Line], bool]] = []
    prev: Section | None = None
    lines: list[_Line] = []
    for sec in sorted(sections, key=lambda s: s.ordinal):
        paragraphs = sec.para_start is not None
        same_file = prev is not None and prev.path == sec.path and (prev.para_start is not None) == paragraphs
        if not same_file:
            if lines:
                out.append((prev.path if prev else None, lines, prev is not None and prev.para_start is not None))
            lines = []
        elif sec.page is not None and prev is not None and prev.page is not None:
            if sec.page != prev.page + 1:
                lines.append(_Line("", None, None))
            else:
                while lines and _PAGE_NUMBER.match(lines[-1].text):  # a page's footer number
                    lines.pop()
        elif paragraphs or sec.line_start is None or prev is None or prev.line_end is None \
                or sec.line_start != prev.line_end + 1:
            lines.append(_Line("", None, None))
        body = sec.text.split("\n")
        if sec.page is not None:
            if lines and lines[-1].page is not None:
                while body and _PAGE_NUMBER.match(body[0]):  # a page's header number
                    body = body[1:]
            lines += [_Line(t, None, sec.page) for t in body]
        elif paragraphs:
            for t in body:
                lines += [_Line(t, None, None), _Line("", None, None)]
        else:
            first = sec.line_start or 1
            lines += [_Line(t, first + i if sec.line_start is not None else None, None) for i, t in enumerate(body)]
        prev = sec
    if lines:
        out.append((prev.path if prev else None, lines, prev is not None and prev.para_start is not None))
    return out


# -- blocks: paragraphs, list items, headings, code lines --------------------------------------------

_BULLET = re.compile(r"^\s*[-*•‣◦▪+]\s+")
_LIST_ITEM = re.compile(r"^\s*(?:[-*•‣◦▪+]\s+|\(?\d{1,3}[.)]\s+|\(?[a-zA-Z][.)]\s+|\([ivxIVX]{1,5}\)\s+|§\s*\d)")
_TABLE_ROW = re.compile(r"^[^|]*\|[^|]*\|")  # two bars or more: a row of a table, a passage of its own
_DATE_LIKE = re.compile(r"\b\d{4}\b|\b\d{1,2}[./-]\d{1,2}[./-]\d{2,4}\b")
_UNDERLINE = re.compile(r"^\s*([=\-~^*#])\1{2,}\s*$")
_COMMENT = re.compile(r"^\s*(?:/\*+|\*+/|\*(?!\w)|//+|#+(?!!)|--(?!-)|;+|%+|REM\s)\s?")
_END_PUNCT = re.compile(r"[.!?;:,。؟،]\s*[\"'”’)\]]*\s*$")
_LETTERS = re.compile(r"[^\W\d_]")
_HYPHEN_KEEP = frozenset(_split(
    "non self co pre post anti multi cross well third sub semi inter intra ex"))


_SMALL = frozenset(["a", "an", "and", "as", "at", "by", "for", "from", "in", "of", "on", "or", "the", "to", "with"])


def _is_heading(lines: list[_Line], i: int, markdown: bool) -> bool:
    s = lines[i].text.strip()
    if markdown and re.match(r"^#{1,6}\s", s):
        return True
    nxt = lines[i + 1].text if i + 1 < len(lines) else ""
    if _UNDERLINE.match(nxt) and _LETTERS.search(s):
        return True
    words = s.split()
    if not words or len(words) > 12 or not _LETTERS.search(s) or _DATE_LIKE.search(s):
        return False  # "Version 3, 29 June 2007" says something
    letters = "".join(_LETTERS.findall(s))
    if len(letters) >= 3 and letters.isupper() and not _END_PUNCT.search(s):
        return True
    alone_before = i == 0 or not lines[i - 1].text.strip()
    alone_after = i + 1 >= len(lines) or not nxt.strip()
    # standing alone, without a full stop, in title case or numbered ("1. Definitions", "Terms of Use");
    # not a command or a value shown on a line of its own ("gpgconf --launch gpg-agent")
    big = [w for w in words if _LETTERS.search(w) and w.casefold() not in _SMALL]
    titled = bool(big) and sum(w[0].isupper() for w in big) >= 0.6 * len(big)
    numbered = bool(re.match(r"^(?:\d+(?:\.\d+)*\.?|[A-Z]\.|[IVX]+\.)\s", s))
    return alone_before and alone_after and not _END_PUNCT.search(s) and len(words) <= 10 and (titled or numbered)


def _blocks(lines: list[_Line], code: bool, paragraphs: bool, markdown: bool = False) -> list[tuple[list[_Line], bool]]:
    """(lines, is_heading) of each block; in code, comment lines are stripped of their markers."""
    out: list[tuple[list[_Line], bool]] = []
    cur: list[_Line] = []

    def flush() -> None:
        nonlocal cur
        if cur:
            out.append((cur, False))
        cur = []

    docstring = False
    for i, ln in enumerate(lines):
        s = ln.text.strip()
        if code:
            quotes = s.count('"""') + s.count("'''")
            if docstring or quotes:
                text = s.replace('"""', " ").replace("'''", " ").strip()
                if quotes % 2:
                    docstring = not docstring
                if not text:
                    flush()
                    continue
                cur.append(_Line(text, ln.line, ln.page))
                if not docstring:
                    flush()
                continue
            m = _COMMENT.match(ln.text)
            if m and s:
                text = ln.text[m.end():].rstrip()
                text = re.sub(r"\s*\*+/\s*$", "", text).strip()
                if not text or not _LETTERS.search(text):
                    flush()
                    continue
                if _LIST_ITEM.match(text):
                    flush()
                cur.append(_Line(text, ln.line, ln.page))
                continue
            flush()
            if s:
                out.append(([_Line(s, ln.line, ln.page)], False))
            continue
        if not s or _UNDERLINE.match(s):
            flush()
            continue
        if not paragraphs and _is_heading(lines, i, markdown):
            flush()
            out.append(([_Line(s.lstrip("#").strip(), ln.line, ln.page)], True))
            continue
        if _TABLE_ROW.match(s):
            flush()
            out.append(([_Line(s, ln.line, ln.page)], False))
            continue
        # a new item: a bullet always; "7." or "(a)" only after a line that ends a sentence or an item, as
        # hard-wrapped prose may put "section\n7. It ..." on two lines
        if cur and (_BULLET.match(ln.text) or (_LIST_ITEM.match(ln.text) and (
                _END_PUNCT.search(cur[-1].text) or _LIST_ITEM.match(cur[0].text)))):
            flush()
        cur.append(_Line(s, ln.line, ln.page))
    flush()
    return out


# -- sentences ----------------------------------------------------------------------------------------

_ABBREV = frozenset(
    _split(
        "e.g i.e etc vs cf no nos nr art sec secs para p pp fig figs inc ltd co corp mr mrs ms dr "
        "st jr sr approx ca al ed eds vol ch resp esp incl viz"))
_BOUNDARY = re.compile(r"[.!?。؟]+[\"'”’)\]]*(?=\s+)")


def _join(lines: list[_Line]) -> tuple[str, list[tuple[int, _Line]]]:
    """The block's lines as one text, and where each line starts in it."""
    text = ""
    starts: list[tuple[int, _Line]] = []
    for ln in lines:
        piece = ln.text.strip()
        if text:
            m = re.search(r"([^\W\d_]+)-$", text)
            if m and piece[:1].islower() and m.group(1).casefold() not in _HYPHEN_KEEP:
                text = text[:-1]  # "adip-" + "iscing"
            elif not text.endswith("-"):
                text += " "
        starts.append((len(text), ln))
        text += piece
    return text, starts


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        end = m.end()
        rest = text[end:].lstrip()
        if not rest:
            continue
        word = re.search(r"([\w.]+)$", text[start:m.start()])
        w = word.group(1).casefold().strip(".") if word else ""
        if text[m.start()] == "." and (w in _ABBREV or (len(w) == 1 and w.isalpha() and w.isascii())):
            continue  # "e.g. The", "J. Smith"
        first = rest[0]
        if first.islower() or first in ",;:)":
            continue
        if text[m.start()] == "." and w.isdigit() and first.isdigit():
            continue  # "section 4. 2" is rare; "4.5" has no space anyway
        spans.append((start, end))
        start = end
        while start < len(text) and text[start].isspace():
            start += 1
    if text[start:].strip():
        spans.append((start, len(text)))
    out: list[tuple[int, int]] = []
    for a, b in spans:
        if len(text[a:b].split()) <= MAX_SENTENCE_WORDS:
            out.append((a, b))
            continue
        cut = a
        for m in re.finditer(r";\s+", text[a:b]):
            here = a + m.end()
            if len(text[cut:here].split()) >= 8 and len(text[here:b].split()) >= 8:
                out.append((cut, here))
                cut = here
        out.append((cut, b))
    return out


def _where(starts: list[tuple[int, _Line]], a: int, b: int) -> tuple[_Line, _Line]:
    first = last = starts[0][1]
    for at, ln in starts:
        if at <= a:
            first = ln
        if at < b:
            last = ln
    return first, last


def _stream_passages(doc: Document, path: str | None, lines: list[_Line], code: bool,
                     paragraphs: bool, markdown: bool = False) -> list[Passage]:
    singles: list[Passage] = []
    for block, heading in _blocks(lines, code, paragraphs, markdown):
        text, starts = _join(block)
        spans = [(0, len(text))] if heading else _sentence_spans(text)
        for lo, hi in spans:
            first, last = _where(starts, lo, hi)
            singles.append(Passage(
                doc.id, doc.filename, first.page, path if first.page is not None else (path or doc.filename),
                first.line, last.line, text[lo:hi].strip(), page_end=last.page, heading=heading))
    out = list(singles)
    for one, two in zip(singles, singles[1:], strict=False):
        if one.heading or two.heading or _fragment(one.text) or _fragment(two.text):
            continue  # "License." beside a sentence lends it nothing: a pair is two sentences, not one and a scrap
        out.append(Passage(doc.id, doc.filename, one.page, one.path, one.line_start,
                           two.line_end if two.line_end is not None else one.line_end, f"{one.text} {two.text}",
                           pair=True, page_end=two.page_end or two.page))
    return out


__all__ = ["Passage", "is_code", "passages", "section_passages"]


def _fragment(text: str) -> bool:
    """A piece too short to be a sentence of its own ("License.", "Definitions."): never half of a pair."""
    return len(re.findall(r"\w+", text)) < 2
