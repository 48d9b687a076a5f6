"""Decoding, normalisation and line-range sectioning of text and source code."""

from __future__ import annotations

import codecs
import unicodedata

from docqa.errors import InvalidDocument
from docqa.ingest import ParsedSection

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 (or UTF-16/32 with a byte-order mark); anything else is refused with the offset."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError as exc:
                raise InvalidDocument(
                    f"{name} starts with a {codec} byte-order mark but is not valid {codec}."
                ) from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidDocument(
            f"{name} is not valid UTF-8 text (first bad byte at offset {exc.start}). "
            "Save it as UTF-8 and upload it again."
        ) from exc


def normalize(text: str) -> str:
    """NFC, no NULs, Unix newlines. Scripts (Arabic, Hebrew, CJK) and bidi marks are kept."""
    text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", text)


def looks_binary(data: bytes) -> bool:
    head = data[:8192]
    if any(head.startswith(bom) for bom, _ in _BOMS):
        return False
    return b"\x00" in head


def split_lines(text: str, max_chars: int, *, path: str | None = None, markdown: bool = False) -> list[ParsedSection]:
    """Cut text into sections of whole lines, about `max_chars` each, preferring blank lines
    (and Markdown headings) as boundaries. Line numbers are 1-based and inclusive."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    sections: list[ParsedSection] = []
    start = 0
    size = 0

    def flush(end: int) -> None:
        nonlocal start, size
        # the blank lines a cut falls on are boundaries, not content: trim them off both ends
        first, last = start, end
        while first < last and not lines[first].strip():
            first += 1
        while last > first and not lines[last - 1].strip():
            last -= 1
        if last > first:
            body = "\n".join(lines[first:last])
            sections.append(ParsedSection(text=body, path=path, line_start=first + 1, line_end=last))
        start, size = end, 0

    for i, line in enumerate(lines):
        is_heading = markdown and line.startswith("#")
        if size and (
            size + len(line) + 1 > max_chars
            or (is_heading and size >= max_chars // 4)
            or (not line.strip() and size >= max_chars // 2)
        ):
            flush(i)
        size += len(line) + 1
    flush(len(lines))
    return sections
