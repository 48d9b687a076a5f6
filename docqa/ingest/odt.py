"""OpenDocument text (.odt): headings, paragraphs, lists and tables in document order, like Word.

An .odt is a zip whose content.xml holds the text in a small, documented vocabulary (ODF 1.3, part 3):
`text:h` (a heading with its `text:outline-level`), `text:p`, `text:list` / `text:list-item`, and
`table:table` rows. lxml reads content.xml directly, with entity expansion, DTD loading and network
access off and its size limits on (as for legal XML): odfdo and odfpy, the maintained ODF libraries,
build a whole document model (styles, metadata, every element as an object) to reach the same text, and
parse with their XML library's defaults. What docqa reads of the file is only what this module names.

- The archive limits of archive.py (entry count, sizes, compression ratio, overlapping entries) are
  checked before content.xml is read; an encrypted file (its manifest has `encryption-data`) is refused
  with a sentence.
- Headings start a section (outline.py) cited by their number (§4.2) or text; paragraphs are numbered
  within their heading's span (`[doc.odt §2 ¶3]`); a table row is one paragraph, cells joined by " | ".
- Tracked changes: the current text. Deleted text lives in `text:tracked-changes`, which is dropped,
  as are tables of contents and indexes (they repeat the headings), comments and form controls.
- Footnotes and endnotes: the note's mark stays in its paragraph as `[^1]`, and the note's text follows
  that paragraph as a paragraph of its own (`[^1]: …`), as Markdown writes footnotes.
"""

from __future__ import annotations

import re
from typing import Any

from lxml import etree

from docqa.errors import InvalidDocument
from docqa.ingest import ParsedDocument, ParseLimits
from docqa.ingest.archive import open_checked_zip, read_member
from docqa.ingest.outline import Outline
from docqa.ingest.text import normalize

MEDIA_TYPE = "application/vnd.oasis.opendocument.text"
_NOTE_MARK = re.compile(r"\[\^[^\]]*\]")
MAX_CONTENT_BYTES = 64 * 1024 * 1024
TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
DRAW = "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"


def _t(name: str) -> str:
    return f"{{{TEXT}}}{name}"


H, P, LIST, LIST_ITEM, LIST_HEADER = _t("h"), _t("p"), _t("list"), _t("list-item"), _t("list-header")
SPACE, TAB, LINE_BREAK, NOTE, NOTE_CITATION, NOTE_BODY = (_t("s"), _t("tab"), _t("line-break"), _t("note"),
                                                          _t("note-citation"), _t("note-body"))
TABLE_TABLE, TABLE_ROW, TABLE_CELL = f"{{{TABLE}}}table", f"{{{TABLE}}}table-row", f"{{{TABLE}}}table-cell"
COVERED_CELL = f"{{{TABLE}}}covered-table-cell"
ANNOTATION = f"{{{OFFICE}}}annotation"
# blocks whose text is not the document's current text, or repeats it
DROPPED = {_t(n) for n in ("tracked-changes", "table-of-content", "illustration-index", "table-index",
                           "object-index", "user-index", "alphabetical-index", "bibliography", "sequence-decls",
                           "variable-decls", "user-field-decls", "dde-connection-decls", "soft-page-break")} | {
    f"{{{OFFICE}}}forms", ANNOTATION, f"{{{OFFICE}}}annotation-end", f"{{{TABLE}}}table-columns",
    f"{{{TABLE}}}table-column", f"{{{TABLE}}}table-column-group"}
# inline elements whose text is not part of the paragraph it sits in
INLINE_DROPPED = {ANNOTATION, _t("change"), _t("ruby-text")}


def parse_odt(data: bytes, name: str, limits: ParseLimits) -> ParsedDocument:
    zf, infos = open_checked_zip(data, name, limits)
    by_name = {i.filename: i for i in infos}
    manifest = by_name.get("META-INF/manifest.xml")
    if manifest is not None and b"encryption-data" in read_member(zf, manifest, name, 4_000_000):
        raise InvalidDocument(f"{name} is password-protected (an encrypted OpenDocument file). Save it without a "
                              "password (File › Properties › Security, or Save As without 'Save with password') "
                              "and upload it again.")
    mimetype = by_name.get("mimetype")
    kind = read_member(zf, mimetype, name, 200).decode("ascii", "replace").strip() if mimetype else ""
    if kind and not kind.startswith(MEDIA_TYPE):
        raise InvalidDocument(f"{name} is an OpenDocument file of another kind ({kind}), not a text document.")
    content = by_name.get("content.xml")
    if content is None:
        raise InvalidDocument(f"{name} is a damaged OpenDocument file: it has no content.xml.")
    root = _xml(read_member(zf, content, name, MAX_CONTENT_BYTES), name)
    body = root.find(f"{{{OFFICE}}}body/{{{OFFICE}}}text")
    if body is None:
        raise InvalidDocument(f"{name} is an OpenDocument file without a text body (is it a spreadsheet or a "
                              "presentation?).")
    reader = _Reader(Outline(limits.section_max_chars))
    try:
        reader.blocks(body)
    except RecursionError as exc:
        raise InvalidDocument(f"{name} nests its elements too deeply to read.") from exc
    sections = reader.outline.finish()
    if not sections:
        raise InvalidDocument(f"{name} is an OpenDocument text without any text (outside a table of contents "
                              "or an index).")
    meta: dict[str, Any] = {}
    changes = body.find(_t("tracked-changes"))
    if changes is not None and len(changes):
        meta["revisions"] = True
        meta["tracked_changes"] = {"regions": len(changes), "read_as": "current text (deletions dropped)"}
    return ParsedDocument("odt", MEDIA_TYPE, sections, parser="lxml (ODF)", meta=meta)


def _xml(data: bytes, name: str) -> Any:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                             remove_comments=True, remove_pis=True)
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise InvalidDocument(f"{name} is a damaged OpenDocument file: its content.xml is not well-formed XML "
                              f"({exc.msg}).") from exc


class _Reader:
    def __init__(self, outline: Outline) -> None:
        self.outline = outline

    def blocks(self, parent: Any) -> None:
        for node in parent:
            tag = node.tag
            if not isinstance(tag, str) or tag in DROPPED:
                continue
            if tag == H:
                level = node.get(_t("outline-level"))
                text, notes = self.inline(node)
                text = _NOTE_MARK.sub("", text)  # a heading is cited by its words; its notes follow it
                self.outline.heading(int(level) if level and level.isdigit() else 1, normalize(text))
                self.notes(notes)
            elif tag == P:
                text, notes = self.inline(node)
                self.outline.paragraph(normalize(text))
                self.notes(notes)
            elif tag == TABLE_TABLE:
                self.table(node)
            else:  # lists, list items, sections, table headers, frames … hold blocks of their own
                self.blocks(node)

    def table(self, table: Any) -> None:
        for row in table.iter(TABLE_ROW):
            if row.getparent() is not None and _owner_table(row) is not table:
                continue  # a row of a table nested in a cell: read as part of that cell
            cells = []
            for cell in row:
                if cell.tag == TABLE_CELL:
                    parts = [self.inline(p)[0] for p in cell.iter(P, H)]
                    cells.append(" ".join(" ".join(parts).split()))
            if any(cells):
                self.outline.paragraph(normalize(" | ".join(cells)))

    def notes(self, notes: list[tuple[str, str]]) -> None:
        for mark, text in notes:
            self.outline.paragraph(normalize(f"[^{mark}]: {text}" if mark else f"Note: {text}"))

    def inline(self, node: Any) -> tuple[str, list[tuple[str, str]]]:
        """The paragraph's text, spaces and tabs as ODF encodes them, and its notes (mark, text)."""
        out: list[str] = [node.text or ""]
        notes: list[tuple[str, str]] = []
        for child in node:
            tag = child.tag
            if isinstance(tag, str):
                if tag == SPACE:
                    count = child.get(_t("c"), "1")
                    out.append(" " * min(int(count) if count.isdigit() else 1, 100))
                elif tag == TAB:
                    out.append("\t")
                elif tag == LINE_BREAK:
                    out.append(" ")
                elif tag == NOTE:
                    mark = "".join(child.findtext(NOTE_CITATION) or "").strip()
                    body = child.find(NOTE_BODY)
                    text = " ".join(self.inline(p)[0] for p in body.iter(P, H)) if body is not None else ""
                    out.append(f"[^{mark}]" if mark else "")
                    if text.strip():
                        notes.append((mark, " ".join(text.split())))
                elif tag in INLINE_DROPPED or tag in DROPPED:
                    pass
                elif tag.startswith(f"{{{DRAW}}}"):
                    pass  # frames, images and text boxes: their text is not the paragraph's
                else:  # spans, links, fields, bookmarks, ruby base …
                    text, inner = self.inline(child)
                    out.append(text)
                    notes.extend(inner)
            out.append(child.tail or "")
        return "".join(out), notes


def _owner_table(row: Any) -> Any:
    node = row.getparent()
    while node is not None and node.tag != TABLE_TABLE:
        node = node.getparent()
    return node
