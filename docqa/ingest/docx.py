"""Word (.docx): paragraphs, headings, numbered clauses and tables, in document order (python-docx).

A .docx is a zip, and an untrusted one: the archive limits of archive.py (entry count, sizes,
compression ratio, overlapping entries…) are checked before python-docx opens it. Its XML parser
resolves no entities: one declared in a DOCTYPE stays as written (`&name;`), with the text around it.

- Headings are paragraphs styled "Heading N" (or based on one) or with an outline level; each
  starts a section (outline.py) cited by its number (§4.2) or its text.
- Numbered paragraphs get their label as Word shows it ("4.2", "(a)"), counted from the document's
  numbering definitions, since python-docx reads the definitions but does not count them.
- Tables: one paragraph per row, cells joined by " | " (a merged cell once).
- Tracked changes: the current text (insertions kept, deletions dropped); the document's
  metadata says `revisions: true` with how many insertions and deletions there are.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import docx
from docx.enum.style import WD_STYLE_TYPE
from docx.oxml.ns import nsmap, qn
from docx.table import Table
from docx.text.paragraph import Paragraph
from lxml import etree

from docqa.errors import InvalidDocument
from docqa.ingest import ParsedDocument, ParseLimits
from docqa.ingest.archive import open_checked_zip
from docqa.ingest.outline import Outline
from docqa.ingest.text import normalize

MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_NS = {"w": nsmap["w"]}
_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)
# The paragraph's current text: the text-bearing children of its runs, plain or in links, fields, content
# controls and tracked insertions, never of a tracked deletion or move away (w:del / w:moveFrom), nor of a
# text box's own paragraphs. One compiled query per paragraph: python-docx's Run.text compiles one for every
# run, half the parse time, and skips runs inside insertions, which are part of the current text.
_RUN_CONTENT = etree.XPath(
    ".//w:r[not(ancestor::w:del or ancestor::w:moveFrom or ancestor::w:txbxContent)]"
    "/*[self::w:t or self::w:tab or self::w:br or self::w:cr or self::w:noBreakHyphen or self::w:ptab]",
    namespaces=_NS)
_RUN_CHARS = {qn("w:tab"): "\t", qn("w:ptab"): "\t", qn("w:cr"): "\n", qn("w:noBreakHyphen"): "-"}
_T, _BR = qn("w:t"), qn("w:br")


def parse_docx(data: bytes, name: str, limits: ParseLimits) -> ParsedDocument:
    open_checked_zip(data, name, limits)
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises KeyError, ValueError, lxml errors … for a damaged package
        raise InvalidDocument(f"{name} is a damaged Word document that cannot be read ({type(exc).__name__}).") \
            from exc
    styles = _Styles(document)
    numbering = _Numbering(document, styles)
    outline = Outline(limits.section_max_chars)
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            text = normalize(paragraph_text(block))
            level = _heading_level(block, styles)
            label = numbering.label(block)
            if level:
                outline.heading(level, text, label)
            elif text.strip():
                outline.paragraph(f"{label} {text}" if label else text)
        elif isinstance(block, Table):
            for row in _table_rows(block):
                outline.paragraph(normalize(row))
    sections = outline.finish()
    if not sections:
        raise InvalidDocument(f"{name} is a Word document without any text.")
    meta: dict[str, Any] = {}
    body = document.element.body
    inserted, deleted = len(body.xpath(".//w:ins | .//w:moveTo")), len(body.xpath(".//w:del | .//w:moveFrom"))
    if inserted or deleted:
        meta["revisions"] = True
        meta["tracked_changes"] = {"insertions": inserted, "deletions": deleted,
                                   "read_as": "current text (insertions kept, deletions dropped)"}
    return ParsedDocument("docx", MEDIA_TYPE, sections, parser="python-docx", meta=meta)


def paragraph_text(paragraph: Paragraph) -> str:
    out = []
    for node in _RUN_CONTENT(paragraph._p):
        tag = node.tag
        if tag == _T:
            # itertext, not .text: an entity reference python-docx's parser leaves unresolved (a DOCTYPE
            # Word never writes) is a child node, and the text after it is that node's tail
            out.append("".join(node.itertext()))
        elif tag == _BR:  # a page or column break is no text; a line break is
            out.append("" if node.get(qn("w:type")) in ("page", "column") else "\n")
        else:
            out.append(_RUN_CHARS[tag])
    return "".join(out)


def _table_rows(table: Table) -> list[str]:
    rows = []
    for row in table.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:
            if id(cell._tc) in seen:  # a merged cell is returned once per grid column it spans
                continue
            seen.add(id(cell._tc))
            text = " ".join(" ".join(paragraph_text(p) for p in cell.paragraphs).split())
            cells.append(text)
        if any(cells):
            rows.append(" | ".join(cells))
    return rows


class _Styles:
    """Paragraph styles by id, resolved once: python-docx looks a paragraph's style up by scanning
    every style (and the default's by scanning them again), which dominated the parse."""

    def __init__(self, document: Any) -> None:
        self.by_id: dict[str, Any] = {}
        for style in document.styles:
            if style.type == WD_STYLE_TYPE.PARAGRAPH:
                self.by_id[style.style_id] = style
        self.default = document.styles.default(WD_STYLE_TYPE.PARAGRAPH)
        self._chains: dict[str | None, list[Any]] = {}
        self._levels: dict[str | None, int] = {}

    def heading_level(self, paragraph: Paragraph) -> int:
        """N for a style "Heading N", or one based on it (custom heading styles usually are); else 0."""
        style_id = paragraph._p.style
        if style_id not in self._levels:
            names = (_HEADING_STYLE.match(style.name or "") for style in self.chain(paragraph))
            self._levels[style_id] = next((int(m.group(1)) for m in names if m), 0)
        return self._levels[style_id]

    def chain(self, paragraph: Paragraph) -> list[Any]:
        """The paragraph's style and the styles it is based on, nearest first."""
        style_id = paragraph._p.style
        if style_id not in self._chains:
            style = self.by_id.get(style_id) if style_id else None
            style = style or self.default
            chain: list[Any] = []
            while style is not None and len(chain) < 8 and style not in chain:
                chain.append(style)
                style = style.base_style
            self._chains[style_id] = chain
        return self._chains[style_id]


def _heading_level(paragraph: Paragraph, styles: _Styles) -> int:
    level = styles.heading_level(paragraph)
    if level:
        return level
    ppr = paragraph._p.pPr
    outline = ppr.find(qn("w:outlineLvl")) if ppr is not None else None
    if outline is not None:
        level = int(outline.get(qn("w:val"), "9"))
        return level + 1 if level < 9 else 0
    return 0


_ROMAN = [(1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"), (50, "l"), (40, "xl"),
          (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i")]


def _roman(n: int) -> str:
    out = ""
    for value, letters in _ROMAN:
        while n >= value:
            out, n = out + letters, n - value
    return out


def _letters(n: int) -> str:
    return chr(ord("a") + (n - 1) % 26) * ((n - 1) // 26 + 1)


_FORMATS: dict[str, Callable[[int], str]] = {
    "decimal": str, "decimalZero": lambda n: f"{n:02d}", "lowerLetter": _letters,
    "upperLetter": lambda n: _letters(n).upper(), "lowerRoman": _roman, "upperRoman": lambda n: _roman(n).upper(),
}


def _xpath(element: Any, path: str) -> Any:
    """XPath with the w: prefix bound (numbering definitions are plain lxml elements to python-docx)."""
    return etree.XPath(path, namespaces=_NS)(element)


class _Numbering:
    """Counts Word's automatic numbering as it goes, to label numbered paragraphs as Word shows them."""

    def __init__(self, document: Any, styles: _Styles) -> None:
        try:
            self.root = document.part.numbering_part.element
        except (KeyError, NotImplementedError):
            self.root = None
        self.styles = styles
        self.counters: dict[str, list[int]] = {}
        self._levels_of: dict[str, list[tuple[str, str, int] | None]] = {}

    def label(self, paragraph: Paragraph) -> str | None:
        if self.root is None:
            return None
        num_id, ilvl = _num_pr(paragraph, self.styles)
        if num_id is None or num_id == "0":
            return None
        if num_id not in self._levels_of:
            self._levels_of[num_id] = self._levels(num_id)
        levels = self._levels_of[num_id]
        level = levels[ilvl] if ilvl < len(levels) else None
        if level is None:
            return None
        counts = self.counters.setdefault(num_id, [0] * 9)
        for deeper in range(ilvl + 1, 9):
            counts[deeper] = 0
        fmt, text, start = level
        counts[ilvl] = counts[ilvl] + 1 if counts[ilvl] else start
        if fmt not in _FORMATS:  # bullets and formats without a number
            return None

        def fill(m: re.Match[str]) -> str:
            k = int(m.group(1)) - 1
            other = levels[k] if k < len(levels) else None
            if other is None:
                return ""
            number: Callable[[int], str] = _FORMATS.get(other[0], str)
            return number(counts[k] or other[2])

        return re.sub(r"%(\d)", fill, text).strip() or None

    def _levels(self, num_id: str) -> list[tuple[str, str, int] | None]:
        nums = _xpath(self.root, f'w:num[@w:numId="{num_id}"]') if num_id.isdigit() else []
        if not nums:
            return []
        abstract_ids = _xpath(nums[0], "w:abstractNumId/@w:val")
        abstracts = _xpath(self.root, f'w:abstractNum[@w:abstractNumId="{abstract_ids[0]}"]') \
            if abstract_ids and abstract_ids[0].isdigit() else []
        if not abstracts:
            return []
        levels: list[tuple[str, str, int] | None] = [None] * 9
        for lvl in _xpath(abstracts[0], "w:lvl"):
            ilvl = int(lvl.get(qn("w:ilvl"), "0"))
            if not 0 <= ilvl < 9:
                continue
            fmt = (_xpath(lvl, "w:numFmt/@w:val") or ["decimal"])[0]
            text = (_xpath(lvl, "w:lvlText/@w:val") or [""])[0]
            start = (_xpath(lvl, "w:start/@w:val") or ["1"])[0]
            levels[ilvl] = (fmt, text, int(start) if start.isdigit() else 1)
        for override in _xpath(nums[0], "w:lvlOverride[w:startOverride]"):
            ilvl = int(override.get(qn("w:ilvl"), "0"))
            start = _xpath(override, "w:startOverride/@w:val")[0]
            level = levels[ilvl] if 0 <= ilvl < 9 else None
            if level is not None and start.isdigit():
                levels[ilvl] = (level[0], level[1], int(start))
        return levels


def _num_pr(paragraph: Paragraph, styles: _Styles) -> tuple[str | None, int]:
    """(numId, level) from the paragraph's own properties, else from its style's (and their bases')."""
    ppr = paragraph._p.pPr
    sources = [ppr] if ppr is not None else []
    sources += [style.element.pPr for style in styles.chain(paragraph) if style.element.pPr is not None]
    num_id: str | None = None
    ilvl: int | None = None
    for source in sources:
        num_pr = source.find(qn("w:numPr"))
        if num_pr is None:
            continue
        if num_id is None:
            found = num_pr.find(qn("w:numId"))
            num_id = found.get(qn("w:val")) if found is not None else None
        if ilvl is None:
            found = num_pr.find(qn("w:ilvl"))
            level = found.get(qn("w:val")) if found is not None else None
            ilvl = int(level) if level is not None and level.isdigit() else None
    return num_id, min(ilvl or 0, 8)
