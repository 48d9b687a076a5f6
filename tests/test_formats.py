"""Documents as people have them, end to end over HTTP: scanned PDFs read by the real Tesseract,
PDFs that pypdf cannot read (PDFium's fallback), password-protected PDFs, Word files and web pages,
and hostile Word zips. Every file is generated in the test (tests/doc_builders.py); the app, its
parse sandbox, SQLite and Tesseract are the real ones.
"""

from __future__ import annotations

import logging
import unicodedata

import pytest
from click.testing import CliRunner

from docqa.cli import main as cli
from docqa.engine.citations import attribute, extract_citations
from docqa.ingest.ocr import tesseract_version
from docqa.settings import Settings
from docqa.web.app import create_app
from tests import builders, doc_builders
from tests.support import LOOPBACK
from tests.test_ingest import all_sections, assert_nothing_stored, assert_refused, created, upload

pytestmark = pytest.mark.skipif(tesseract_version() is None, reason="needs Debian's tesseract-ocr (make ocr-deps)")

CONTRACT = ["SERVICES CONTRACT", "The monthly fee is 4,200 euros.", "Payment is due within 30 days."]
ARABIC = ["عقد الخدمات", "الرسوم الشهرية أربعة آلاف يورو."]


def squashed(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


# --- OCR ----------------------------------------------------------------------------------------


def test_scanned_english_pdf_is_read_by_ocr(client):
    doc = created(client, "scan.pdf", doc_builders.scanned_pdf([doc_builders.scan_image(CONTRACT)]))
    assert doc["parser"] == "pypdf"
    ocr = doc["meta"]["ocr"]
    assert ocr["pages"] == [1] and ocr["langs"] == "eng+ara" and ocr["seconds"] > 0
    assert 60 < ocr["mean_confidence"] <= 100
    [section] = all_sections(client, doc["id"])
    assert section["page"] == 1 and section["ocr"] is True
    assert section["ocr_confidence"] == ocr["mean_confidence"]
    for line in CONTRACT:
        assert line in section["text"]


def test_scanned_arabic_pdf_and_a_per_upload_language(client):
    data = doc_builders.scanned_pdf([doc_builders.scan_image(ARABIC, rtl=True)])
    r = client.post("/api/documents", files={"file": ("عقد.pdf", data, "application/pdf")},
                    data={"ocr_langs": "ara"})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["meta"]["ocr"]["langs"] == "ara"
    [section] = all_sections(client, doc["id"])
    assert section["ocr"] is True and section["ocr_confidence"] > 60
    text = squashed(section["text"])
    assert "الرسوم الشهرية" in text and "عقد الخدمات" in text  # logical order, as typed


def test_unknown_ocr_language_is_refused(client, settings):
    data = doc_builders.scanned_pdf([doc_builders.scan_image(CONTRACT)])
    r = client.post("/api/documents", files={"file": ("scan.pdf", data)}, data={"ocr_langs": "klingon"})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "OCR language klingon is not installed" in detail and "eng" in detail and "ara" in detail
    assert_nothing_stored(client, settings)


def test_mixed_pdf_reads_only_the_scanned_page_by_ocr(client):
    data = doc_builders.scanned_pdf(["Page one has a real text layer naming the parties.",
                                     doc_builders.scan_image(["Signed by both parties", "on 3 March 2024."])])
    doc = created(client, "mixed.pdf", data)
    assert doc["n_pages"] == 2 and doc["meta"]["ocr"]["pages"] == [2] and doc["meta"]["ocr"]["tried"] == 1
    first, second = all_sections(client, doc["id"])
    assert (first["page"], first["ocr"], first["ocr_confidence"]) == (1, False, None)
    assert first["text"] == "Page one has a real text layer naming the parties."
    assert (second["page"], second["ocr"]) == (2, True)
    assert "Signed by both parties" in second["text"] and "3 March 2024" in second["text"]


def test_ocr_time_extends_the_parse_limit(tmp_path):
    """Three scanned pages take longer than the parse limit: each page OCR reads adds its allowance.
    The limit is a third of what the parse took here, so that it holds on fast and slow CPUs alike."""
    from litestar.testing import TestClient

    from docqa.ingest import ParseLimits
    from docqa.ingest.sandbox import parse_in_sandbox

    data = doc_builders.scanned_pdf([doc_builders.scan_image([f"Page {n} of the scan.", *CONTRACT]) for n in (1, 2, 3)])
    measured = parse_in_sandbox(data, "long-scan.pdf", ParseLimits(), timeout_s=60, memory_bytes=2 << 30)
    limit = measured.meta["parse_seconds"] / 3
    settings = Settings(data_dir=tmp_path / "data", parse_timeout_s=limit, ocr_page_timeout_s=20)
    with TestClient(create_app(settings), base_url=LOOPBACK) as client:
        doc = created(client, "long-scan.pdf", data)
    assert doc["meta"]["ocr"]["pages"] == [1, 2, 3]
    assert doc["meta"]["parse_seconds"] > limit  # past the plain limit, within the extended one


def test_a_long_scan_does_not_hold_up_other_uploads(client):
    """Each upload parses in its own sandboxed process: a text file uploaded while a scan is being OCR'd
    is stored while the scan is still being read."""
    from concurrent.futures import ThreadPoolExecutor

    service = client.app.state.documents
    scan = doc_builders.scanned_pdf([doc_builders.scan_image([f"Page {n}.", *CONTRACT]) for n in range(2)])
    with ThreadPoolExecutor(2) as pool:
        long_one = pool.submit(service.ingest, "long-scan.pdf", scan)
        short_one = pool.submit(service.ingest, "note.txt", b"A short note.\n")
        assert short_one.result().created
        assert not long_one.done()
        assert long_one.result().document.meta["ocr"]["pages"] == [1, 2]


def test_drawings_without_text_are_still_refused(client, settings):
    assert_refused(client, settings, "scan.pdf", builders.make_scanned_pdf(1), 422, "has no extractable text",
                   "OCR found none")


def test_ocr_turned_off_refuses_scans(tmp_path):
    from litestar.testing import TestClient

    with TestClient(create_app(Settings(data_dir=tmp_path / "data", ocr=False)), base_url=LOOPBACK) as client:
        r = upload(client, "scan.pdf", doc_builders.scanned_pdf([doc_builders.scan_image(CONTRACT)]))
    assert r.status_code == 422
    assert "OCR is turned off" in r.json()["detail"]


# --- PDFs pypdf cannot read ----------------------------------------------------------------------


def test_pdf_that_pypdf_rejects_is_read_by_pdfium(client):
    data = doc_builders.pdf_pypdf_rejects(["Page one of the damaged file.", "The fee is 100 euros."])
    doc = created(client, "damaged.pdf", data)
    assert doc["parser"] == "pypdfium2"
    assert "Invalid object in /Pages" in doc["meta"]["pypdf_error"]
    assert [(s["page"], s["text"]) for s in all_sections(client, doc["id"])] == [
        (1, "Page one of the damaged file."), (2, "The fee is 100 euros.")]


# --- passwords ----------------------------------------------------------------------------------

PASSWORD = "Tr0ub4dor-s3cret"


def test_encrypted_pdf_with_its_password(client, settings, caplog):
    data = builders.make_encrypted_pdf(["The secret fee is 9 euros."], user_password=PASSWORD)
    with caplog.at_level(logging.DEBUG):
        r = client.post("/api/documents", files={"file": ("locked.pdf", data)}, data={"password": PASSWORD})
    assert r.status_code == 201, r.text
    assert all_sections(client, r.json()["id"])[0]["text"] == "The secret fee is 9 euros."
    # used to read the file, and nowhere else: not in the database, the stored files or the log
    assert PASSWORD not in caplog.text
    for path in settings.data_dir.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_encrypted_pdf_with_a_wrong_password(client, settings):
    data = builders.make_encrypted_pdf(["The secret fee is 9 euros."], user_password=PASSWORD)
    r = client.post("/api/documents", files={"file": ("locked.pdf", data)}, data={"password": "guess"})
    assert r.status_code == 422
    body = r.json()
    assert "the password does not open this PDF" in body["detail"] and "guess" not in r.text
    assert body["extra"] == {"password": "wrong"}
    assert_nothing_stored(client, settings)


def test_encrypted_pdf_without_a_password_says_how_to_send_one(client, settings):
    data = builders.make_encrypted_pdf(["The secret fee is 9 euros."], user_password=PASSWORD)
    body = assert_refused(client, settings, "locked.pdf", data, 422, "needs a password", "form field 'password'",
                          "--password")
    assert body["extra"] == {"password": "required"}


def test_cli_ingest_with_password(tmp_path):
    path = tmp_path / "locked.pdf"
    path.write_bytes(builders.make_encrypted_pdf(["The secret fee is 9 euros."], user_password=PASSWORD))
    env = {"DOCQA_DATA_DIR": str(tmp_path / "data")}
    wrong = CliRunner().invoke(cli, ["ingest", str(path), "--password", "guess"], env=env)
    assert wrong.exit_code == 1 and "the password does not open this PDF" in wrong.output
    right = CliRunner().invoke(cli, ["ingest", str(path), "--password", PASSWORD], env=env)
    assert right.exit_code == 0, right.output
    assert right.output.startswith("stored") and "pypdf" in right.output and PASSWORD not in right.output


# --- Word ---------------------------------------------------------------------------------------


def test_docx_headings_clauses_table_and_tracked_change(client):
    doc = created(client, "msa.docx", doc_builders.contract_docx())
    assert doc["kind"] == "docx" and doc["parser"] == "python-docx" and doc["n_pages"] is None
    assert doc["meta"]["revisions"] is True
    assert doc["meta"]["tracked_changes"]["insertions"] == 1 and doc["meta"]["tracked_changes"]["deletions"] == 1
    got = [(s["heading"], s["clause"], s["para_start"], s["para_end"], s["text"]) for s in
           all_sections(client, doc["id"])]
    assert got == [
        (None, None, 1, 2, "Master Services Agreement\nThis agreement is made between Acme Ltd and Beta GmbH."),
        ("1 Definitions", "1", 1, 1, "Words have the meanings given in this clause."),
        ("4 Termination", "4", 1, 1, "Either party may end this agreement as set out below."),
        ("4 Termination › 4.2 Notice", "4.2", 1, 5,
         "1. Notice must be given in writing.\n2. Notice is sent to the registered address.\n"
         "The notice period is sixty days.\nFee | Amount\nMonthly fee | EUR 4,200"),
        ("5 Liability", "5", 1, 1, "Liability is capped at the fees of one year."),
    ]


def test_docx_text_after_an_entity_is_kept(client):
    """An entity reference python-docx leaves unresolved stays as written, and the run's text after it is
    kept (it was silently dropped); the entity's declared value is never expanded (entity bombs)."""
    doc = created(client, "entities.docx", doc_builders.docx_with_entities())
    texts = "\n".join(s["text"] for s in all_sections(client, doc["id"]))
    assert "Liability is capped by &party; at one year, or &undeclared; at two." in texts
    assert "Gamma SA" not in texts


def test_docx_citations_are_verified_by_clause_and_paragraph(client):
    doc = created(client, "msa.docx", doc_builders.contract_docx())
    service = client.app.state.documents
    sources = [(service.get(doc["id"]), service.all_sections(doc["id"]))]
    answer = ('The period is sixty days [msa.docx §4.2 ¶3] "The notice period is sixty days". '
              'The fee [§4.2 ¶5] "EUR 4,200". Wrong place [msa.docx §5 ¶1] "sixty days". '
              'Deleted text [msa.docx §4.2 ¶3] "period is thirty days". '
              'Preamble [msa.docx ¶2] "Acme Ltd and Beta GmbH".')
    cites = extract_citations(answer, sources)
    assert [(c.clause, c.para_start, c.verified) for c in cites] == [
        ("4.2", 3, True), ("4.2", 5, True), ("5", 1, False), ("4.2", 3, False), (None, 2, True)]
    assert cites[0].document_id == doc["id"] and cites[0].page is None and cites[0].path is None
    # docqa's own attribution cites the paragraph it matched, in the same form
    [matched] = attribute("The notice period is sixty days.", sources)
    assert (matched.marker, matched.verified, matched.origin) == ("[msa.docx §4.2 ¶3]", True, "matched")


def test_docx_that_is_another_zip_is_refused(client, settings):
    assert_refused(client, settings, "letter.docx", doc_builders.other_zip_named_docx(), 415,
                   "letter.docx is named like a Word document but its content is a zip archive")


def test_hostile_docx_bomb_is_refused(client, settings):
    assert_refused(client, settings, "bomb.docx", doc_builders.docx_bomb(), 422, "looks like an archive bomb",
                   "word/document.xml")


def test_docx_with_too_many_entries_is_refused(tmp_path):
    from litestar.testing import TestClient

    settings = Settings(data_dir=tmp_path / "data", max_archive_entries=40)
    with TestClient(create_app(settings), base_url=LOOPBACK) as client:
        assert_refused(client, settings, "many.docx", doc_builders.docx_with_entries(60), 422, "entries",
                       "at most 40")


# --- HTML ---------------------------------------------------------------------------------------


def test_html_main_text_with_headings_as_sections(client):
    doc = created(client, "policy.html", doc_builders.PAGE_HTML)
    assert doc["kind"] == "html" and doc["media_type"] == "text/html" and doc["parser"] == "beautifulsoup4"
    assert doc["meta"]["title"] == "Acme privacy policy"
    sections = all_sections(client, doc["id"])
    assert [(s["heading"], s["clause"], s["text"]) for s in sections] == [
        ("Privacy policy", "Privacy policy", "We keep very little data about you."),
        ("Privacy policy › 1. Cookies", "1",
         "We use one session cookie.\nIt expires after one day.\nIt is never shared.\nCookie | Lifetime\nsid | 1 day"),
        ("Privacy policy › 2. Contact", "2", "Write to privacy@acme.example."),
    ]
    everything = " ".join(s["text"] for s in sections)
    for boilerplate in ("SCRIPT", "injected", "Home", "Careers", "banner", "Related articles", "Copyright",
                        "font-family", "Enable JavaScript"):
        assert boilerplate not in everything


def test_html_without_a_doctype_and_markup_in_a_text_file(client):
    doc = created(client, "fragment.htm", b"<h2>Notes</h2><p>First point.</p><p>Second point.</p>")
    assert doc["kind"] == "html" and doc["n_sections"] == 1
    # a .md file that starts with markup is still Markdown
    assert created(client, "readme.md", b"<html> is a tag.\n\nSome text.\n")["kind"] == "text"


# --- a question over a scan, with the real model ---------------------------------------------------


def test_question_over_a_scanned_contract_cites_the_scanned_page(client):
    """SmolLM2-135M reads the OCR'd text like any page; the citation (the model's or docqa's own
    match) points at the scanned page and is verified against the recognised text. (Asked "How much is":
    to "What is the monthly fee?" the 135M model's greedy answer flips with flash attention's rounding,
    off by default since, to a summary of the cover page; bench/results/flash.json measures such flips.)"""
    data = doc_builders.scanned_pdf(["Cover page: services contract between Acme Ltd and Beta GmbH.",
                                     doc_builders.scan_image(["The monthly fee is 4,200 euros."])])
    doc = created(client, "signed-contract.pdf", data)
    assert doc["meta"]["ocr"]["pages"] == [2]
    r = client.post("/api/sessions", json={"document_ids": [doc["id"]]})
    assert r.status_code == 201, r.text
    r = client.post(f"/api/sessions/{r.json()['id']}/questions",
                    json={"question": "How much is the monthly fee?", "max_tokens": 24,
                          "sampling": {"temperature": 0, "seed": 1}})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert "4,200" in answer["answer"], answer["answer"]
    scanned = [c for c in answer["citations"] if c["page"] == 2 and c["verified"]]
    assert scanned and "4,200" in scanned[0]["quote"], answer["citations"]


def test_docx_in_chunked_mode_keeps_clause_and_paragraph_markers(client):
    """Chunked mode renders slices of sections: a Word clause cut in two keeps its § and ¶ numbers."""
    from docqa.engine.chunking import parts_of
    from docqa.engine.engine import Engine

    doc = created(client, "msa.docx", doc_builders.contract_docx())
    service = client.app.state.documents
    sources = [(service.get(doc["id"]), service.all_sections(doc["id"]))]
    parts = parts_of(sources, lambda text: len(text.split()), 12)  # small enough to cut clause 4.2
    rendered = Engine.render_parts(parts)
    assert "None" not in rendered, rendered
    assert "[msa.docx §4.2 ¶1-" in rendered and "¶3 The notice period is sixty days." in rendered, rendered
    assert sum(p.section.clause == "4.2" for p in parts) >= 2  # clause 4.2 was split
