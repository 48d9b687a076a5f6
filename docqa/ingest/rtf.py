"""Rich Text Format (.rtf): paragraphs and headings, like Word, through striprtf.

striprtf (BSD-3-Clause, pure Python, one module, maintained) turns RTF into text with RTF's own rules:
destinations that are not text (font and colour tables, stylesheet, pictures, fields' instructions,
headers and footers, footnotes, comments) are skipped, `\\'xx` bytes are decoded in the code page of
their font or the document (`\\ansicpg`), `\\uN` characters kept, `\\par` ends a paragraph and a table
row becomes one line of cells joined by "|". Its tokenizer is one regular expression, linear in the
file's size; the parse sandbox bounds its time and memory like every reader's.

Headings: RTF marks a heading paragraph with `\\outlinelevelN` (Word and LibreOffice write it with
the paragraph's properties; N = 0 is Heading 1). striprtf keeps no formatting, so each such control
word is followed, before striprtf reads it, by a private-use character that names its level; a line
that carries one is a heading of that level (outline.py: cited by its number, §4.2, or its text).
The other lines are paragraphs of their heading's span (`[letter.rtf §2 ¶3]`, `[letter.rtf ¶2]`
before the first heading); a table row is one paragraph.
"""

from __future__ import annotations

import re

from striprtf.striprtf import rtf_to_text

from docqa.errors import InvalidDocument
from docqa.ingest import ParsedDocument, ParseLimits
from docqa.ingest.outline import Outline
from docqa.ingest.text import normalize

MEDIA_TYPE = "application/rtf"
HEADING_MARK = 0xE000  # U+E000 + level - 1: private use, never in a document's own text here
_OUTLINE = re.compile(rb"\\outlinelevel([0-8])(?![0-9])")
_MARKS = re.compile("[\ue000-\ue008]")
_CODE_PAGE = re.compile(rb"\\ansicpg(\d{3,5})")
# code pages of one byte a character: raw 8-bit text in the file decodes in them one byte to one character
# (striprtf counts the bytes of \binN data as characters); any other is read byte for byte
SINGLE_BYTE = {437, 850, 852, 866, 874, 1250, 1251, 1252, 1253, 1254, 1255, 1256, 1257, 1258, 10000}


def looks_like_rtf(data: bytes) -> bool:
    return data[:16].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{\\rtf")


def parse_rtf(data: bytes, name: str, limits: ParseLimits) -> ParsedDocument:
    if not looks_like_rtf(data):
        raise InvalidDocument(f"{name} is not an RTF document: it does not start with '{{\\rtf'.")
    marked = _OUTLINE.sub(lambda m: m.group(0) + b"{\\uc1\\u%d?}" % (HEADING_MARK + int(m.group(1))), data)
    page = _CODE_PAGE.search(data[:4096])
    code_page = int(page.group(1)) if page else 1252
    raw = marked.decode(f"cp{code_page}" if code_page in SINGLE_BYTE else "latin-1", errors="replace")
    try:
        text = rtf_to_text(raw, errors="replace")
    except (ValueError, IndexError, LookupError, OverflowError) as exc:  # a damaged \bin length, hex run …
        raise InvalidDocument(f"{name} is a damaged RTF document that cannot be read ({type(exc).__name__}).") \
            from exc
    outline = Outline(limits.section_max_chars)
    headings = 0
    for line in normalize(text).split("\n"):
        mark = _MARKS.search(line)
        clean = _MARKS.sub("", line).replace("\u00a0", " ")
        if mark and clean.strip():
            outline.heading(ord(mark.group(0)) - HEADING_MARK + 1, clean)
            headings += 1
        else:
            if clean.rstrip().endswith("|"):  # a table row: striprtf ends each cell with "|"
                clean = " | ".join(cell.strip() for cell in clean.rstrip().rstrip("|").split("|"))
            outline.paragraph(clean)
    sections = outline.finish()
    if not sections:
        raise InvalidDocument(f"{name} is an RTF document without any text.")
    return ParsedDocument("rtf", MEDIA_TYPE, sections, parser="striprtf", meta={"headings": headings})
