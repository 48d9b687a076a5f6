"""Citation labels per format (docqa/ingest/where.py), from the fields a citation or a stored section has."""

from __future__ import annotations

from docqa.ingest.where import citation_label

NONE = {"page": None, "path": None, "line_start": None, "line_end": None, "clause": None, "para_start": None,
        "para_end": None}
SHEETS = {"sheets": [{"name": "Sheet1", "range": "A1:D40", "rows": 40, "columns": 4}]}


def label(filename: str, kind: str, meta: dict | None = None, **c: object) -> str:
    return citation_label(filename, kind, meta, {**NONE, **c})


def test_each_format_is_worded_as_a_reviewer_cites_it():
    assert label("mail.eml", "email", page=3, path="report.pdf") == "mail.eml › report.pdf p. 3"
    assert label("scan.pdf", "pdf", page=2) == "scan.pdf p. 2"
    assert label("mail.eml", "email", path="msa.docx", clause="4.2", para_start=3, para_end=3) \
        == "mail.eml › msa.docx §4.2 ¶3"
    assert label("bill.xml", "legal_xml", clause="3(a)", para_start=2, para_end=4) == "bill.xml §3(a) ¶2-4"
    assert label("letter.rtf", "rtf", para_start=4, para_end=4) == "letter.rtf ¶4"
    assert label("terms.odt", "odt", clause="Level 2 Title") == "terms.odt §Level 2 Title"
    assert label("prices.xlsx", "sheet", SHEETS, path="Sheet1", line_start=12, line_end=12) \
        == "prices.xlsx › Sheet1!A12:D12"
    assert label("prices.xlsx", "sheet", SHEETS, path="Sheet1", line_start=2, line_end=5) \
        == "prices.xlsx › Sheet1!A2:D5"
    assert label("prices.xlsx", "sheet", SHEETS, path="Other", line_start=2, line_end=2) == "prices.xlsx › Other:L2"
    assert label("repo.tar.gz", "archive", path="src/app.py", line_start=10, line_end=12) \
        == "repo.tar.gz › src/app.py:L10-L12"
    assert label("mail.eml", "email", line_start=1, line_end=5) == "mail.eml:L1-L5"
    assert label("list.mbox", "mbox", path="message 2", line_start=3, line_end=3) == "list.mbox › message 2:L3"
