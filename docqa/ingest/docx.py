"""Word (.docx): paragraphs, headings, numbered clauses and tables, in document order (python-docx).

A .docx is a zip, and an untrusted one: the archive limits of archive.py (entry count, sizes,
compression ratio, overlapping entries…) are checked before python-docx opens it. Its XML parser
resolves no entities.

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
from typing import Any

import docx
from docx.oxml.ns import nsmap, qn
from docx.table import Table
from docx.text.paragraph import Paragraph
from docx.text.run import Run
from lxml import etree

from docqa.errors import InvalidDocument
from docqa.ingest import ParsedDocument, ParseLimits
from docqa.ingest.archive import open_checked_zip
from docqa.ingest.outline import Outline
from docqa.ingest.text import normalize

MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_NS = {"w": nsmap["w"]}
_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)
# runs whose text is the paragraph's current text: plain, in links, fields and content controls, and
# tracked insertions and moves-to; never w:del / w:moveFrom (their text is what was removed)
_CURRENT_RUNS = ("w:r | w:hyperlink/w:r | w:ins/w:r | w:ins/w:hyperlink/w:r | w:moveTo/w:r | w:smartTag/w:r"
                 " | w:fldSimple/w:r | w:sdt/w:sdtContent/w:r | w:customXml/w:r")


def is_docx(names: set[str]) -> bool:
    return "word/document.xml" in names and "[Content_Types].xml" in names


def parse_docx(data: bytes, name: str, limits: ParseLimits) -> ParsedDocument:
    open_checked_zip(data, name, limits)
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises KeyError, ValueError, lxml errors … for a damaged package
        raise InvalidDocument(f"{name} is a damaged Word document that cannot be read ({type(exc).__name__}).") \
            from exc
    numbering = _Numbering(document)
    outline = Outline(limits.section_max_chars)
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            text = normalize(paragraph_text(block))
            level = _heading_level(block)
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
    return "".join(Run(r, paragraph).text for r in paragraph._p.xpath(_CURRENT_RUNS))


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


def _heading_level(paragraph: Paragraph) -> int:
    style = paragraph.style
    for _ in range(8):  # a custom heading style is usually based on a built-in one
        if style is None:
            break
        m = _HEADING_STYLE.match(style.name or "")
        if m:
            return int(m.group(1))
        style = style.base_style
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


_FORMATS = {
    "decimal": str, "decimalZero": lambda n: f"{n:02d}", "lowerLetter": _letters,
    "upperLetter": lambda n: _letters(n).upper(), "lowerRoman": _roman, "upperRoman": lambda n: _roman(n).upper(),
}


def _xpath(element: Any, path: str) -> Any:
    """XPath with the w: prefix bound (numbering definitions are plain lxml elements to python-docx)."""
    return etree.XPath(path, namespaces=_NS)(element)


class _Numbering:
    """Counts Word's automatic numbering as it goes, to label numbered paragraphs as Word shows them."""

    def __init__(self, document: Any) -> None:
        try:
            self.root = document.part.numbering_part.element
        except (KeyError, NotImplementedError):
            self.root = None
        self.counters: dict[str, list[int]] = {}

    def label(self, paragraph: Paragraph) -> str | None:
        if self.root is None:
            return None
        num_id, ilvl = _num_pr(paragraph)
        if num_id is None or num_id == "0":
            return None
        levels = self._levels(num_id)
        if not levels or ilvl >= len(levels) or levels[ilvl] is None:
            return None
        counts = self.counters.setdefault(num_id, [0] * 9)
        for deeper in range(ilvl + 1, 9):
            counts[deeper] = 0
        fmt, text, start = levels[ilvl]
        counts[ilvl] = counts[ilvl] + 1 if counts[ilvl] else start
        if fmt not in _FORMATS:  # bullets and formats without a number
            return None

        def fill(m: re.Match[str]) -> str:
            k = int(m.group(1)) - 1
            if k >= len(levels) or levels[k] is None:
                return ""
            value = counts[k] or levels[k][2]
            return _FORMATS.get(levels[k][0], str)(value)

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


def _num_pr(paragraph: Paragraph) -> tuple[str | None, int]:
    """(numId, level) from the paragraph's own properties, else from its style's (and their bases')."""
    ppr = paragraph._p.pPr
    sources = [ppr] if ppr is not None else []
    style = paragraph.style
    for _ in range(8):
        if style is None:
            break
        if style.element.pPr is not None:
            sources.append(style.element.pPr)
        style = style.base_style
    num_id: str | None = None
    ilvl: int | None = None
    for source in sources:
        num_pr = source.find(qn("w:numPr"))
        if num_pr is None:
            continue
        if num_id is None:
            num_id = next(iter(_xpath(num_pr, "w:numId/@w:val")), None)
        if ilvl is None:
            level = next(iter(_xpath(num_pr, "w:ilvl/@w:val")), None)
            ilvl = int(level) if level is not None and level.isdigit() else None
    return num_id, min(ilvl or 0, 8)
