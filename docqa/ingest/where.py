"""Where a citation points, in the words a reviewer uses for each format (one line, for people):

- a PDF page, alone or inside a mail: `report.pdf p. 3`, `mail.eml › report.pdf p. 3`
- a clause and its paragraphs (Word, OpenDocument, RTF, HTML, legal XML): `bill.xml §3(a) ¶2`,
  `mail.eml › msa.docx §4.2 ¶3`, `letter.rtf ¶4` before the first heading
- a spreadsheet's rows by their cell references: `prices.xlsx › Sheet1!A12:D12`
- lines of a file, alone or inside an archive or a mail: `repo.tar.gz › src/app.py:L10-L12`,
  `mail.eml:L1-L5` (the message's own text), `list.mbox › message 2:L3`

`c` is a citation as the API returns it (or a stored section: the same fields). The page's viewer
(static/formats.js) writes the same labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SEPARATOR = " › "


def citation_label(filename: str, kind: str, meta: Mapping[str, Any] | None, c: Mapping[str, Any]) -> str:
    path = c.get("path") or ""
    member = path if path and path != filename else ""
    head = f"{filename}{SEPARATOR}{member}" if member else filename
    if c.get("page") is not None:
        return f"{head} p. {c['page']}"
    if c.get("clause") or c.get("para_start") is not None:
        clause = f" §{c['clause']}" if c.get("clause") else ""
        paras = ""
        if c.get("para_start") is not None:
            end = c.get("para_end")
            paras = f" ¶{c['para_start']}" + (f"-{end}" if end not in (None, c["para_start"]) else "")
        return f"{head}{clause}{paras}"
    start, end = c.get("line_start"), c.get("line_end")
    if start is None:
        return head
    if kind == "sheet" and member:
        cells = sheet_cells(meta or {}, member, start, end if end is not None else start)
        if cells:
            return f"{filename}{SEPARATOR}{member}!{cells}"
    lines = f"L{start}" + (f"-L{end}" if end not in (None, start) else "")
    return f"{head}:{lines}"


def sheet_cells(meta: Mapping[str, Any], sheet: str, first_row: int, last_row: int) -> str | None:
    """`A12:D12`: rows `first_row`..`last_row` across the sheet's used columns (meta.sheets' range)."""
    for entry in meta.get("sheets") or []:
        if entry.get("name") == sheet and ":" in str(entry.get("range", "")):
            start, end = str(entry["range"]).split(":", 1)
            first_col = start.rstrip("0123456789")
            last_col = end.rstrip("0123456789")
            return f"{first_col}{first_row}:{last_col}{last_row}"
    return None
