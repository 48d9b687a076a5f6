"""Spreadsheets (.xlsx, .ods), end to end over HTTP: each sheet's rows as lines cited by sheet and row,
formulas by their cached values, and hostile workbooks (a zip bomb, a huge sheet) refused with a
sentence. The workbooks are written here as the zips of XML that Excel and LibreOffice save.
"""

from __future__ import annotations

from docqa.engine.citations import extract_citations
from docqa.engine.sources import from_rows
from tests import builders
from tests.test_ingest import all_sections, assert_refused, created

_CT = ('<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
       '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
       '<Default Extension="xml" ContentType="application/xml"/>'
       '<Override PartName="/xl/workbook.xml" '
       'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>{sheets}</Types>')
_SHEET_CT = ('<Override PartName="/xl/worksheets/sheet{n}.xml" '
             'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>')
_RELS = ('<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
         '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
         'officeDocument" Target="xl/workbook.xml"/></Relationships>')
_NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
_R = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'


def cell(ref: str, value: object, formula: str | None = None) -> str:
    f = f"<f>{formula}</f>" if formula else ""
    if isinstance(value, str):
        return f'<c r="{ref}" t="inlineStr">{f}<is><t>{value}</t></is></c>'
    return f'<c r="{ref}">{f}<v>{value}</v></c>'


def xlsx(sheets: dict[str, list[str]]) -> bytes:
    """sheets: name → rows of <c> elements (row numbers taken from the cell references)."""
    overrides = "".join(_SHEET_CT.format(n=i + 1) for i in range(len(sheets)))
    files = {"[Content_Types].xml": _CT.format(sheets=overrides),
             "_rels/.rels": _RELS}
    entries, rels = [], []
    for i, (name, cells) in enumerate(sheets.items(), start=1):
        entries.append(f'<sheet name="{name}" sheetId="{i}" r:id="rId{i}"/>')
        rels.append(f'<Relationship Id="rId{i}" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
                    f'relationships/worksheet" Target="worksheets/sheet{i}.xml"/>')
        rows: dict[int, list[str]] = {}
        for c in cells:
            ref = c.split('r="', 1)[1].split('"', 1)[0]
            rows.setdefault(int("".join(ch for ch in ref if ch.isdigit())), []).append(c)
        body = "".join(f'<row r="{r}">{"".join(cs)}</row>' for r, cs in sorted(rows.items()))
        files[f"xl/worksheets/sheet{i}.xml"] = (f'<?xml version="1.0"?><worksheet {_NS}><sheetData>{body}'
                                                '</sheetData></worksheet>')
    files["xl/workbook.xml"] = (f'<?xml version="1.0"?><workbook {_NS} {_R}><sheets>{"".join(entries)}'
                                '</sheets></workbook>')
    files["xl/_rels/workbook.xml.rels"] = ('<?xml version="1.0"?><Relationships xmlns="http://schemas.'
                                          'openxmlformats.org/package/2006/relationships">'
                                          f'{"".join(rels)}</Relationships>')
    return builders.make_zip({k: v.encode() for k, v in files.items()})


PRICES = [cell("A1", "Item"), cell("B1", "Qty"), cell("C1", "Unit"), cell("D1", "Total"),
          cell("A2", "Widget"), cell("B2", 3), cell("C2", 4.5), cell("D2", 13.5, "B2*C2"),
          cell("A4", "Gadget"), cell("B4", 2), cell("C4", 10), cell("D4", 999, "B4*C4"),  # a stale cached value
          cell("A5", "Unsaved"), cell("D5", "", "B5*C5")]


def ods(rows: list[list[str]]) -> bytes:
    table = "".join("<table:table-row>" + "".join(
        f'<table:table-cell office:value-type="string"><text:p>{v}</text:p></table:table-cell>' if v else
        "<table:table-cell/>" for v in row) + "</table:table-row>" for row in rows)
    content = ('<?xml version="1.0"?><office:document-content '
               'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
               'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
               'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body>'
               f'<office:spreadsheet><table:table table:name="Register">{table}</table:table>'
               '</office:spreadsheet></office:body></office:document-content>')
    manifest = ('<?xml version="1.0"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:'
                'manifest:1.0" manifest:version="1.2"><manifest:file-entry manifest:full-path="/" '
                'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/><manifest:file-entry '
                'manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>')
    return builders.make_zip({"mimetype": b"application/vnd.oasis.opendocument.spreadsheet",
                              "content.xml": content.encode(), "META-INF/manifest.xml": manifest.encode()})


def test_xlsx_rows_are_lines_cited_by_sheet_and_row_and_formulas_by_cached_value(client):
    doc = created(client, "prices.xlsx", xlsx({"Sheet1": PRICES, "Notes": [cell("B3", "Valid until June")]}))
    assert doc["kind"] == "sheet" and doc["parser"] == "python-calamine"
    assert doc["meta"]["sheets"] == [{"name": "Sheet1", "range": "A1:D5", "rows": 5, "columns": 4},
                                     {"name": "Notes", "range": "B3:B3", "rows": 1, "columns": 1}]
    sections = all_sections(client, doc["id"])
    [sheet1, notes] = sections
    assert (sheet1["path"], sheet1["line_start"], sheet1["line_end"]) == ("Sheet1", 1, 5)
    assert sheet1["text"].split("\n") == ["Item | Qty | Unit | Total", "Widget | 3 | 4.5 | 13.5", "",
                                          "Gadget | 2 | 10 | 999", "Unsaved"]  # cached values, never evaluated
    assert (notes["path"], notes["line_start"], notes["text"]) == ("Notes", 3, " | Valid until June")
    service = client.app.state.documents
    sources = [from_rows(service.get(doc["id"]), service.all_sections(doc["id"]))]
    cites = extract_citations('Widgets [Sheet1:L2] "Widget | 3". Wrong row [Sheet1:L4] "Widget".', sources)
    assert [(c.path, c.line_start, c.verified) for c in cites] == [("Sheet1", 2, True), ("Sheet1", 4, False)]


def test_ods_sheet_is_read(client):
    doc = created(client, "register.ods", ods([["Name", "Role"], ["Ana", "Counsel"], [], ["Ben", ""]]))
    assert doc["media_type"] == "application/vnd.oasis.opendocument.spreadsheet"
    [section] = all_sections(client, doc["id"])
    assert section["path"] == "Register" and section["text"] == "Name | Role\nAna | Counsel\n\nBen"


def test_huge_sheet_is_refused(client, settings):
    data = xlsx({"Sheet1": [cell("A1", "corner"), cell("XFD1048576", "far corner")]})
    assert len(data) < 5000
    assert_refused(client, settings, "huge.xlsx", data, 422,
                   "huge.xlsx has a sheet (sheet1.xml) that spans 1,048,576 rows × 16,384 columns",
                   "at most 2,000,000 cells")


def test_spreadsheet_bomb_and_damage_are_refused(client, settings):
    bomb = xlsx({"Sheet1": [cell("A1", "x" * 10)]})
    import io
    import zipfile  # noqa: E401
    buf = io.BytesIO(bomb)
    with zipfile.ZipFile(buf, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("xl/media/zeros.bin", b"\0" * (8 * 1024 * 1024))
    assert_refused(client, settings, "bomb.xlsx", buf.getvalue(), 422, "looks like an archive bomb")
    assert_refused(client, settings, "cut.xlsx", bomb[:200], 422, "cut.xlsx")


def test_password_protected_workbooks_are_refused_with_how_to_fix_it(client, settings):
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 1024
    assert_refused(client, settings, "locked.xlsx", ole, 422, "locked.xlsx is password-protected",
                   "Remove the password")
    manifest = (b"<manifest:manifest><manifest:file-entry><manifest:encryption-data/></manifest:file-entry>"
                b"</manifest:manifest>")
    locked = builders.make_zip({"mimetype": b"application/vnd.oasis.opendocument.spreadsheet",
                                "content.xml": b"\x8f\x01 encrypted", "META-INF/manifest.xml": manifest})
    assert_refused(client, settings, "locked.ods", locked, 422, "locked.ods is password-protected")
