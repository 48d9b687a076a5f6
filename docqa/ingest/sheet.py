"""Spreadsheets (.xlsx, .xlsm, .ods): each sheet's rows as lines, cited by sheet and row.

python-calamine (Python bindings of the Rust calamine crate: one reader for Excel and OpenDocument,
maintained, and about ten times faster than openpyxl) reads the cells. It never evaluates a formula:
a formula cell reads as the value the spreadsheet program saved with it (its cached value), and a
cell without one reads empty.

Both formats are zips, and untrusted: the archive limits of archive.py (entry count, sizes,
compression ratio, overlapping entries) are checked before calamine opens one, and a sheet whose
used range holds more than MAX_CELLS cells is refused (a "huge sheet": a few cells in A1 and
XFD1048576 span 17 billion; in an .ods, one row of values repeated a million times). calamine's XML
reader expands no external entities.

Provenance: a sheet's sections carry the sheet's name as `path` and row numbers as lines, so row 12
of Sheet1 is `[Sheet1:L12]`; a line is the row's cells from column A, joined by " | " (empty cells
keep their place, so the k-th cell is column k). `meta.sheets` gives each sheet's used range
(`A1:D40`), from which a row's cell references follow (`Sheet1!A12:D12`).
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from datetime import date, datetime, time, timedelta
from typing import Any

from lxml import etree
from python_calamine import CalamineWorkbook

from docqa.errors import InvalidDocument
from docqa.ingest import ParsedDocument, ParsedSection, ParseLimits
from docqa.ingest.archive import open_checked_zip, read_member
from docqa.ingest.text import normalize, split_lines

MEDIA_TYPES = {".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
               ".xlsm": "application/vnd.ms-excel.sheet.macroEnabled.12",
               ".ods": "application/vnd.oasis.opendocument.spreadsheet"}
MAX_CELLS = 2_000_000
_CELL_REF = re.compile(rb'<(?:\w+:)?c\s[^>]*?\br="([A-Z]{1,3})(\d{1,7})"')


def parse_sheet(data: bytes, name: str, ext: str, limits: ParseLimits) -> ParsedDocument:
    zf, infos = open_checked_zip(data, name, limits)
    _check_xlsx_extent(zf, infos, name)
    _check_ods_extent(zf, infos, name)
    if any(i.filename == "META-INF/manifest.xml" and b"encryption-data" in read_member(zf, i, name, 1_000_000)
           for i in infos):
        raise InvalidDocument(f"{name} is password-protected (an encrypted OpenDocument file). Save it without a "
                              "password and upload it again.")
    try:
        book = CalamineWorkbook.from_filelike(io.BytesIO(data))
    except Exception as exc:  # calamine raises its own errors for a damaged or encrypted workbook
        raise InvalidDocument(f"{name} is a damaged spreadsheet that cannot be read ({_reason(exc)}).") from exc
    sections: list[ParsedSection] = []
    sheets: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for sheet_name in book.sheet_names:
        try:
            sheet = book.get_sheet_by_name(sheet_name)
        except Exception as exc:  # a chart sheet, a damaged sheet: the others are still read
            skipped.append({"path": sheet_name, "reason": f"cannot be read ({_reason(exc)})"})
            continue
        rows = (sheet.end or (-1, 0))[0] + 1  # calamine's rows start at row 1, even when the used range does not
        if rows * sheet.width > MAX_CELLS:
            raise InvalidDocument(
                f"{name} has a sheet ('{sheet_name}') of {rows:,} rows × {sheet.width:,} columns; docqa "
                f"reads sheets of at most {MAX_CELLS:,} cells.")
        found = _sheet_sections(sheet, sheet_name, limits)
        if not found:
            continue
        first_row, first_col = sheet.start or (0, 0)
        last = f"{column(first_col + sheet.width)}{first_row + sheet.height}"
        sheets.append({"name": sheet_name, "range": f"{column(first_col + 1)}{first_row + 1}:{last}",
                       "rows": sheet.height, "columns": sheet.width})
        sections.extend(found)
    if not sections:
        raise InvalidDocument(f"{name} is a spreadsheet without any cell values.", skipped=skipped)
    return ParsedDocument("sheet", MEDIA_TYPES.get(ext, MEDIA_TYPES[".xlsx"]), sections, skipped=skipped,
                          parser="python-calamine", meta={"sheets": sheets})


def _check_xlsx_extent(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], name: str) -> None:
    """Refuse a worksheet whose cells span more than MAX_CELLS before calamine allocates that range
    (it holds a sheet as one dense grid from A1: cells in A1 and XFD1048576 would ask for 512 GiB)."""
    for info in infos:
        if not (info.filename.startswith("xl/worksheets/") and info.filename.endswith(".xml")):
            continue
        rows = cols = 0
        try:
            with zf.open(info) as fh:
                tail = b""
                while chunk := fh.read(1 << 20):
                    for m in _CELL_REF.finditer(tail + chunk):
                        rows = max(rows, int(m.group(2)))
                        cols = max(cols, _column_number(m.group(1).decode()))
                    tail = chunk[-32:]
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error) as exc:
            raise InvalidDocument(f"{name} has a damaged entry '{info.filename}' ({exc}).") from exc
        if rows * cols > MAX_CELLS:
            sheet = info.filename.rsplit("/", 1)[-1]
            raise InvalidDocument(
                f"{name} has a sheet ({sheet}) that spans {rows:,} rows × {cols:,} columns; docqa reads sheets of "
                f"at most {MAX_CELLS:,} cells.")


_TABLE_NS = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
_TABLE, _ROW, _CELL, _COVERED = (f"{{{_TABLE_NS}}}{t}" for t in ("table", "table-row", "table-cell",
                                                                  "covered-table-cell"))
_ROWS_REPEATED, _COLUMNS_REPEATED = f"{{{_TABLE_NS}}}number-rows-repeated", f"{{{_TABLE_NS}}}number-columns-repeated"
_VALUE_TYPE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}value-type"


def _check_ods_extent(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], name: str) -> None:
    """The same for an OpenDocument spreadsheet, whose content.xml compresses a run of equal rows or cells
    into one element (`table:number-rows-repeated="1000000"`): calamine expands every run that holds a
    value into its grid, so 100,000 rows × 1,000 cells of "1" ask for 4 GB. content.xml is streamed
    (lxml's iterparse, entities and network off) and each table's extent counted from its runs; runs
    without a value (LibreOffice ends every sheet with one up to row 1,048,576) take no room."""
    info = next((i for i in infos if i.filename == "content.xml"), None)
    if info is None:
        return
    table, rows, cols, row_at = "", 0, 0, 0
    try:
        with zf.open(info) as fh:
            for event, el in etree.iterparse(fh, events=("start", "end"), tag=(_TABLE, _ROW),
                                             resolve_entities=False, no_network=True, load_dtd=False,
                                             huge_tree=False):
                if el.tag == _TABLE:
                    if event == "start":
                        table, rows, cols, row_at = el.get(f"{{{_TABLE_NS}}}name", ""), 0, 0, 0
                    else:
                        el.clear()
                    continue
                if event == "start":
                    continue
                repeat = _count(el.get(_ROWS_REPEATED))
                col_at, last_col = 0, 0
                for cell in el:
                    if cell.tag not in (_CELL, _COVERED):
                        continue
                    span = _count(cell.get(_COLUMNS_REPEATED))
                    if cell.get(_VALUE_TYPE) is not None or len(cell):
                        last_col = col_at + span
                    col_at += span
                if last_col:
                    rows, cols = row_at + repeat, max(cols, last_col)
                    if rows * cols > MAX_CELLS:
                        raise InvalidDocument(
                            f"{name} has a sheet ('{table}') that spans {rows:,} rows × {cols:,} columns; docqa "
                            f"reads sheets of at most {MAX_CELLS:,} cells.")
                row_at += repeat
                el.clear()
    except etree.XMLSyntaxError:
        return  # calamine reports a damaged workbook in its own words
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error) as exc:
        raise InvalidDocument(f"{name} has a damaged entry '{info.filename}' ({exc}).") from exc


def _count(value: str | None) -> int:
    return int(value) if value and value.isdigit() and len(value) < 10 else 1


def _column_number(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - ord("A") + 1
    return n


def _sheet_sections(sheet: Any, sheet_name: str, limits: ParseLimits) -> list[ParsedSection]:
    _, first_col = sheet.start or (0, 0)
    lead = [""] * first_col  # cells before the used range: the k-th cell of a line is column k
    # calamine yields every row from row 1 (line k is row k), each from the used range's first column
    lines = [_line(lead + list(row)) for row in sheet.iter_rows()]
    return split_lines(normalize("\n".join(lines)), limits.section_max_chars, path=sheet_name.replace("\n", " "))


def _line(cells: list[Any]) -> str:
    values = [_value(c) for c in cells]
    while values and not values[-1]:
        values.pop()
    return " | ".join(values) if any(values) else ""


def _value(cell: Any) -> str:
    if cell is None or cell == "":
        return ""
    if isinstance(cell, bool):
        return "TRUE" if cell else "FALSE"
    if isinstance(cell, float):
        return str(int(cell)) if cell.is_integer() and abs(cell) < 1e15 else repr(cell)
    if isinstance(cell, datetime):
        return cell.isoformat(sep=" ", timespec="seconds") if cell.time() != time() else cell.date().isoformat()
    if isinstance(cell, date | time):
        return cell.isoformat()
    if isinstance(cell, timedelta):
        return str(cell)
    return " ".join(str(cell).replace("|", "¦").split())


def column(n: int) -> str:
    """Column letters of the 1-based column n: 1 → A, 27 → AA."""
    out = ""
    while n > 0:
        n, rem = divmod(n - 1, 26)
        out = chr(ord("A") + rem) + out
    return out or "A"


def _reason(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]
