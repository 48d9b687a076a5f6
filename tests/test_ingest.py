"""Ingest and store, end to end: HTTP upload → sandboxed parse → SQLite rows + blob file → HTTP reads.

The app is the real Litestar app over ASGI, the database a real SQLite file migrated by Alembic,
and every PDF and zip is generated here (tests/builders.py) and parsed by the real pypdf/zipfile.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from litestar.testing import TestClient
from sqlalchemy import func, select

from docqa.settings import Settings
from docqa.store.models import Document, Section
from docqa.tokens import estimate_tokens
from docqa.web.app import create_app
from tests import builders
from tests.conftest import stored_files
from tests.support import LOOPBACK

# --- helpers ------------------------------------------------------------------------------------


def upload(client: TestClient, name: str, data: bytes, content_type: str = "application/octet-stream"):
    return client.post("/api/documents", files={"file": (name, data, content_type)})


def created(client: TestClient, name: str, data: bytes) -> dict:
    r = upload(client, name, data)
    assert r.status_code == 201, r.text
    return r.json()


def all_sections(client: TestClient, doc_id: str) -> list[dict]:
    r = client.get(f"/api/documents/{doc_id}/sections", params={"limit": 1000})
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["total"] == len(page["items"])
    return page["items"]


def row_counts(client: TestClient) -> tuple[int, int]:
    with client.app.state.db.reader() as s:
        docs = s.scalar(select(func.count()).select_from(Document))
        sections = s.scalar(select(func.count()).select_from(Section))
    return int(docs or 0), int(sections or 0)


def assert_nothing_stored(client: TestClient, settings: Settings) -> None:
    assert client.get("/api/documents").json() == []
    assert stored_files(settings) == []
    assert row_counts(client) == (0, 0)


def assert_refused(
    client: TestClient, settings: Settings, name: str, data: bytes, status: int, *phrases: str
) -> dict:
    r = upload(client, name, data)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status_code"] == status
    for phrase in phrases:
        assert phrase in body["detail"], body["detail"]
    assert_nothing_stored(client, settings)
    return body


def assert_lines_match(text: str, sections: list[dict]) -> None:
    """Each section is exactly the 1-based, inclusive line range it claims, of `text`'s lines."""
    lines = text.split("\n")
    previous_end = 0
    for sec in sections:
        assert sec["line_start"] is not None and sec["line_end"] is not None
        assert previous_end < sec["line_start"] <= sec["line_end"] <= len(lines)
        assert sec["text"] == "\n".join(lines[sec["line_start"] - 1:sec["line_end"]])
        assert sec["n_chars"] == len(sec["text"])
        previous_end = sec["line_end"]
    covered = {n for sec in sections for n in range(sec["line_start"], sec["line_end"] + 1)}
    # every non-blank line of the file is in some section
    assert {i + 1 for i, line in enumerate(lines) if line.strip()} <= covered


@contextmanager
def app_client(tmp_path: Path, **overrides) -> Iterator[tuple[TestClient, Settings]]:
    settings = Settings(data_dir=tmp_path / "custom", **overrides)
    with TestClient(create_app(settings), base_url=LOOPBACK) as c:
        yield c, settings


def long_text(n_paragraphs: int = 40) -> str:
    paragraphs = []
    for p in range(n_paragraphs):
        sentences = [f"Paragraph {p} sentence {s}: the archive keeps line {s} of part {p} intact." for s in range(6)]
        paragraphs.append("\n".join(sentences))
    return "\n\n".join(paragraphs) + "\n"


# --- plain text, Markdown, code -----------------------------------------------------------------


@pytest.mark.both_databases
def test_plain_text_upload_list_get_and_sections(client, settings):
    text = long_text()
    data = text.encode()
    doc = created(client, "notes.txt", data)

    assert doc["filename"] == "notes.txt"
    assert doc["media_type"] == "text/plain"
    assert doc["kind"] == "text"
    assert doc["sha256"] == hashlib.sha256(data).hexdigest()
    assert doc["size_bytes"] == len(data)
    assert doc["n_pages"] is None
    assert doc["skipped"] == []
    assert doc["n_sections"] > 3  # ~12 KB of text in ~2000-character sections
    assert isinstance(doc["id"], str) and doc["id"]

    listed = client.get("/api/documents").json()
    assert [d["id"] for d in listed] == [doc["id"]]
    assert client.get(f"/api/documents/{doc['id']}").json() == doc

    sections = all_sections(client, doc["id"])
    assert len(sections) == doc["n_sections"]
    assert [s["ordinal"] for s in sections] == list(range(len(sections)))
    assert all(s["page"] is None and s["path"] is None for s in sections)
    assert all(len(s["text"]) <= settings.section_max_chars for s in sections)
    assert_lines_match(text, sections)
    assert doc["n_chars"] == sum(s["n_chars"] for s in sections)
    assert doc["token_estimate"] == sum(s["token_estimate"] for s in sections) > 0
    assert all(s["token_estimate"] == estimate_tokens(s["text"]) for s in sections)
    # sections break at paragraph boundaries: each starts a paragraph and ends one
    lines = text.split("\n")
    for sec in sections:
        first_line = sec["text"].split("\n")[0]
        assert first_line.startswith("Paragraph ") and " sentence 0: " in first_line
        assert lines[sec["line_end"]] == ""  # the line after a section is the blank separator
    # a known line is found where its section says it is
    target = lines.index("Paragraph 20 sentence 3: the archive keeps line 3 of part 20 intact.") + 1
    holder = next(s for s in sections if s["line_start"] <= target <= s["line_end"])
    assert holder["text"].split("\n")[target - holder["line_start"]] == lines[target - 1]
    assert target == 20 * 7 + 4  # 6 lines + 1 blank per paragraph, 1-based

    # paging: offset/limit windows over the same ordered list, total stays the full count
    first = client.get(f"/api/documents/{doc['id']}/sections", params={"offset": 0, "limit": 2}).json()
    second = client.get(f"/api/documents/{doc['id']}/sections", params={"offset": 2, "limit": 2}).json()
    assert first["total"] == second["total"] == len(sections)
    assert (first["offset"], first["limit"], second["offset"]) == (0, 2, 2)
    assert first["items"] == sections[:2]
    assert second["items"] == sections[2:4]
    past = client.get(f"/api/documents/{doc['id']}/sections", params={"offset": len(sections)}).json()
    assert past["items"] == [] and past["total"] == len(sections)


def test_sections_paging_parameters_are_validated(client):
    doc = created(client, "a.txt", b"alpha\n")
    r = client.get(f"/api/documents/{doc['id']}/sections", params={"limit": 0})
    assert r.status_code in (400, 422)
    assert r.json()["status_code"] == r.status_code
    assert "limit" in r.json()["detail"]


def test_markdown_headings_start_sections(client):
    parts = []
    for h in range(5):
        body = " ".join(f"Word{h}-{w}" for w in range(90))  # ~800 characters under each heading
        parts.append(f"## Chapter {h}\n\n{body}\n")
    text = "# Handbook\n\n" + "\n".join(parts)
    doc = created(client, "handbook.md", text.encode())
    assert doc["media_type"] == "text/markdown"
    assert doc["kind"] == "text"

    sections = all_sections(client, doc["id"])
    assert_lines_match(text, sections)
    # each chapter (about 800 characters) is its own section, opened by its heading; the short
    # title block before the first chapter stays with it
    starts = [s["text"].split("\n")[0] for s in sections]
    assert starts == ["# Handbook"] + [f"## Chapter {h}" for h in range(1, 5)]
    assert sections[0]["text"].split("\n")[2] == "## Chapter 0"
    for h, sec in enumerate(sections[1:], start=1):
        assert f"Word{h}-0" in sec["text"] and f"Word{h}-89" in sec["text"]
        assert f"Word{h - 1}-" not in sec["text"]


def test_source_code_keeps_exact_line_numbers(client):
    lines = ['"""A module."""', "", "import os", ""]
    for f in range(60):
        lines += [f"def function_{f}(x):", f"    # step {f}", f"    return x + {f}", ""]
    text = "\n".join(lines) + "\n"
    doc = created(client, "module.py", text.encode())
    assert doc["kind"] == "code"
    assert doc["media_type"] == "text/x-source"

    sections = all_sections(client, doc["id"])
    assert len(sections) > 1
    assert_lines_match(text, sections)
    src_lines = text.split("\n")
    for sec in sections:
        assert sec["text"] == "\n".join(src_lines[sec["line_start"] - 1:sec["line_end"]])
    # find a known definition through its section's line range
    target = src_lines.index("def function_42(x):") + 1
    holder = next(s for s in sections if s["line_start"] <= target <= s["line_end"])
    assert holder["text"].split("\n")[target - holder["line_start"]] == "def function_42(x):"


# --- PDF ----------------------------------------------------------------------------------------


def test_pdf_sections_carry_their_page(client):
    pages = [
        "First page: quarterly revenue grew in the northern region.",
        "Second page: the warehouse in Leeds closed in March.",
        "Third page: the board approved the new budget.",
    ]
    data = builders.make_pdf(pages)
    doc = created(client, "report.pdf", data)
    assert doc["kind"] == "pdf"
    assert doc["media_type"] == "application/pdf"
    assert doc["n_pages"] == 3
    assert doc["n_sections"] == 3
    assert doc["sha256"] == hashlib.sha256(data).hexdigest()

    sections = all_sections(client, doc["id"])
    assert [s["page"] for s in sections] == [1, 2, 3]
    for sec, expected in zip(sections, pages, strict=True):
        assert " ".join(sec["text"].split()) == expected
        assert sec["path"] is None and sec["line_start"] is None
        assert sec["token_estimate"] == estimate_tokens(sec["text"]) > 0


def test_pdf_with_a_blank_page_keeps_real_page_numbers(client):
    data = builders.make_pdf(["Alpha page.", "", "Gamma page."])
    doc = created(client, "gaps.pdf", data)
    assert doc["n_pages"] == 3
    sections = all_sections(client, doc["id"])
    assert [(s["page"], s["text"]) for s in sections] == [(1, "Alpha page."), (3, "Gamma page.")]


def test_pdf_encrypted_with_empty_user_password_is_read(client):
    data = builders.make_encrypted_pdf(["Owner-restricted but openable."], user_password="")
    doc = created(client, "restricted.pdf", data)
    assert [s["text"] for s in all_sections(client, doc["id"])] == ["Owner-restricted but openable."]


def test_text_that_mentions_the_pdf_header_is_text(client):
    text = "# PDF internals\n\nEvery PDF starts with `%PDF-1.7` and ends with `%%EOF`.\n"
    doc = created(client, "pdf-notes.md", text.encode())
    assert doc["kind"] == "text" and doc["media_type"] == "text/markdown"
    (section,) = all_sections(client, doc["id"])
    assert section["text"] == text.rstrip("\n")


def test_pdf_with_junk_before_its_header_is_read(client):
    data = b"From: scanner@example.org\r\nX-Mailer: junk\r\n\r\n" + builders.make_pdf(["Junk came first."])
    doc = created(client, "mailed.pdf", data)
    assert doc["kind"] == "pdf"
    assert [s["text"] for s in all_sections(client, doc["id"])] == ["Junk came first."]


# --- scripts and Unicode ------------------------------------------------------------------------

ARABIC = (
    "بسم الله الرحمن الرحيم\n"
    "تقرير الربع الأول: نمت الإيرادات في المنطقة الشمالية بنسبة ١٢٪.\n"
    "\n"
    "أُغلق المستودع في مارس، ونُقلت البضائع إلى الرياض.\n"
)
HEBREW = "שלום עולם\nהדוח הרבעוני: ההכנסות גדלו בצפון.\n"
CJK = "你好，世界。\n第一季度报告：北方地区收入增长。\nこんにちは世界。\n안녕하세요 세계.\n"


@pytest.mark.parametrize(
    ("name", "text", "media_type"),
    [
        ("arabic.txt", ARABIC, "text/plain"),
        ("mixed.md", "# تقرير Report\n\nThe total is ١٢ million (١٢ مليون).\n\n" + ARABIC, "text/markdown"),
        ("hebrew.txt", HEBREW, "text/plain"),
        ("cjk.txt", CJK, "text/plain"),
    ],
)
@pytest.mark.both_databases
def test_non_latin_scripts_round_trip(client, name, text, media_type):
    assert unicodedata.is_normalized("NFC", text)
    doc = created(client, name, text.encode())
    assert doc["media_type"] == media_type
    sections = all_sections(client, doc["id"])
    assert_lines_match(text, sections)
    # every character of every line is stored unchanged (only blank lines fall between sections)
    stored = "".join(s["text"] for s in sections)
    assert stored.replace("\n", "") == text.replace("\n", "")
    for sec in sections:
        assert unicodedata.is_normalized("NFC", sec["text"])
    assert doc["token_estimate"] == sum(estimate_tokens(s["text"]) for s in sections) > 0
    assert doc["n_chars"] == sum(len(s["text"]) for s in sections)


def test_arabic_round_trips_exactly(client):
    doc = created(client, "arabic.txt", ARABIC.encode())
    (section,) = all_sections(client, doc["id"])
    assert section["text"] == ARABIC.rstrip("\n")
    assert (section["line_start"], section["line_end"]) == (1, 4)
    assert doc["token_estimate"] == estimate_tokens(ARABIC.rstrip("\n")) > 0


@pytest.mark.both_databases
def test_text_is_normalised_nfc_lf_and_without_nul(client):
    decomposed = "Cafe\u0301 cre\u0300me bru\u0302le\u0301e"
    composed = unicodedata.normalize("NFC", decomposed)
    assert composed != decomposed and "é" in composed
    text = f"{decomposed}\r\nsecond line\r\nthird line\r\n"
    doc = created(client, "menu.txt", text.encode())
    (section,) = all_sections(client, doc["id"])
    assert section["text"] == f"{composed}\nsecond line\nthird line"
    assert "\r" not in section["text"]
    assert (section["line_start"], section["line_end"]) == (1, 3)

    # Arabic letters with a combining hamza are composed too (alef + U+0654 → U+0623)
    doc = created(client, "hamza.txt", "\u0627\u0654\u062d\u0645\u062f\n".encode())
    (section,) = all_sections(client, doc["id"])
    assert section["text"] == "\u0623\u062d\u0645\u062f" == "أحمد"

    # a NUL past the binary sniffing window (8 KB) is removed, the text around it kept
    filler = ("x" * 99 + "\n") * 90
    doc = created(client, "late-nul.txt", (filler + "before\x00after\n").encode())
    sections = all_sections(client, doc["id"])
    assert all("\x00" not in s["text"] for s in sections)
    assert sections[-1]["text"].split("\n")[-1] == "beforeafter"

    # UTF-16 with a byte-order mark is decoded; an encoded U+0000 is dropped
    doc = created(client, "utf16.txt", "\ufeffهذا نص\x00 UTF-16\n".encode("utf-16-le"))
    (section,) = all_sections(client, doc["id"])
    assert section["text"] == "هذا نص UTF-16"


# --- zip of a codebase --------------------------------------------------------------------------

APP_PY = "\n".join(
    ["import sys", "", "", "def main() -> int:", "    print('hello')", "    return 0", "", "",
     "if __name__ == '__main__':", "    sys.exit(main())"]
) + "\n"
UTIL_PY = "".join(f"def helper_{i}(x):\n    return x * {i}\n\n" for i in range(80))
README = "# Demo\n\nA small repository.\n"


def codebase_zip() -> bytes:
    return builders.make_zip(
        {
            "repo-main/.gitignore": b"secret.env\n*.log\n",
            "repo-main/README.md": README.encode(),
            "repo-main/src/app.py": APP_PY.encode(),
            "repo-main/src/util.py": UTIL_PY.encode(),
            "repo-main/secret.env": b"API_KEY=hunter2\n",
            "repo-main/logs/debug.log": b"DEBUG something\n",
            "repo-main/node_modules/left-pad/index.js": b"module.exports = (s) => s;\n",
            "repo-main/assets/logo.bin": b"\x89BIN\x00\x01\x02\x03" * 16,
            "repo-main/static/app.min.js": b"var a=1;" * 50,
            "repo-main/static/bundle.js": b"var b=2;" * 600,
            "repo-main/package-lock.json": b'{"lockfileVersion": 3}\n',
        },
        dirs=["repo-main", "repo-main/src", "repo-main/static"],
    )


@pytest.mark.both_databases
def test_zip_codebase_sections_have_paths_and_lines_and_skips_are_reported(client):
    doc = created(client, "repo-main.zip", codebase_zip())
    assert doc["kind"] == "archive"
    assert doc["media_type"] == "application/zip"

    skipped = {s["path"]: s["reason"] for s in doc["skipped"]}
    assert skipped == {
        "secret.env": "excluded by .gitignore",
        "logs/debug.log": "excluded by .gitignore",
        "node_modules/left-pad/index.js": "vendored or generated folder",
        "assets/logo.bin": "binary",
        "static/app.min.js": "minified",
        "static/bundle.js": "minified",
        "package-lock.json": "lockfile",
    }
    assert client.get(f"/api/documents/{doc['id']}").json()["skipped"] == doc["skipped"]

    sections = all_sections(client, doc["id"])
    by_path: dict[str, list[dict]] = {}
    for sec in sections:
        by_path.setdefault(sec["path"], []).append(sec)
    assert set(by_path) == {".gitignore", "README.md", "src/app.py", "src/util.py"}
    assert all(s["page"] is None for s in sections)
    assert len(by_path["src/util.py"]) > 1
    for path, text in {"src/app.py": APP_PY, "src/util.py": UTIL_PY, "README.md": README}.items():
        assert_lines_match(text, by_path[path])
    assert by_path["src/app.py"][0]["line_start"] == 1
    assert by_path["src/app.py"][-1]["line_end"] == len(APP_PY.splitlines())
    stored = "\n".join(s["text"] for s in sections)
    assert "hunter2" not in stored and "left-pad" not in stored
    assert doc["token_estimate"] == sum(s["token_estimate"] for s in sections) > 0


def test_zip_without_readable_files_is_refused(client, settings):
    data = builders.make_zip({"repo/node_modules/a.js": b"x\n", "repo/yarn.lock": b"# lock\n"})
    body = assert_refused(client, settings, "deps.zip", data, 422, "contains no readable text files")
    assert {s["path"] for s in body["extra"]["skipped"]} == {"node_modules/a.js", "yarn.lock"}


# --- dedup and delete ---------------------------------------------------------------------------


@pytest.mark.both_databases
def test_same_bytes_twice_is_one_document(client, settings):
    data = builders.make_pdf(["Only once."])
    first = created(client, "a.pdf", data)
    r = upload(client, "renamed.pdf", data)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == first["id"]
    assert r.json()["filename"] == "a.pdf"
    assert [d["id"] for d in client.get("/api/documents").json()] == [first["id"]]
    assert row_counts(client) == (1, 1)
    assert len(stored_files(settings)) == 1

    other = created(client, "b.pdf", builders.make_pdf(["Something else."]))
    assert other["id"] != first["id"]
    assert len(stored_files(settings)) == 2


@pytest.mark.both_databases
def test_delete_removes_row_sections_and_file(client, settings):
    keep = created(client, "keep.txt", b"keep me\n")
    doc = created(client, "gone.py", ("x = 1\n" * 800).encode())
    assert len(stored_files(settings)) == 2
    assert row_counts(client)[1] == keep["n_sections"] + doc["n_sections"]
    blob = client.app.state.documents.blobs.path(doc["sha256"])
    assert blob.is_file() and blob.read_bytes() == ("x = 1\n" * 800).encode()

    r = client.delete(f"/api/documents/{doc['id']}")
    assert r.status_code == 204
    r = client.get(f"/api/documents/{doc['id']}")
    assert r.status_code == 404
    assert doc["id"] in r.json()["detail"]
    assert client.get(f"/api/documents/{doc['id']}/sections").status_code == 404
    with client.app.state.db.reader() as s:
        left = s.scalar(select(func.count()).select_from(Section).where(Section.document_id == doc["id"]))
    assert left == 0
    assert not blob.exists()
    assert stored_files(settings) == [client.app.state.documents.blobs.path(keep["sha256"])]
    assert [d["id"] for d in client.get("/api/documents").json()] == [keep["id"]]
    assert row_counts(client) == (1, keep["n_sections"])

    # the same bytes can be uploaded again after a delete
    again = created(client, "gone.py", ("x = 1\n" * 800).encode())
    assert again["id"] != doc["id"]
    assert blob.is_file()


@pytest.mark.parametrize("method", ["get", "sections", "delete"])
@pytest.mark.both_databases
def test_unknown_document_is_404_json(client, method):
    url = "/api/documents/0123456789abcdef0123456789abcdef"
    if method == "get":
        r = client.get(url)
    elif method == "sections":
        r = client.get(url + "/sections")
    else:
        r = client.delete(url)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["status_code"] == 404
    assert "no document with id '0123456789abcdef0123456789abcdef'" in body["detail"]


# --- bad input: status, a human sentence, and nothing left behind ------------------------------


def test_unsupported_binary_type(client, settings):
    assert_refused(client, settings, "x.png", builders.make_png(), 415, "x.png looks like a PNG file", "cannot read")
    # a Windows program: "an EXE file", not "a EXE file"
    exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(200)
    assert_refused(client, settings, "setup.exe", exe, 415, "setup.exe looks like an EXE file", "cannot read")


def test_pdf_named_as_text(client, settings):
    assert_refused(
        client, settings, "notes.txt", builders.make_pdf(["hi"]), 415,
        "notes.txt is named like text but its content is a PDF",
    )


def test_text_named_as_pdf(client, settings):
    assert_refused(
        client, settings, "report.pdf", b"just some words\n", 415,
        "report.pdf is named like a PDF but its content is text",
    )


def test_office_zip_is_not_a_codebase(client, settings):
    assert_refused(client, settings, "slides.pptx", builders.make_docx(), 415, "is a .pptx file (a zip container)")


def test_damaged_docx(client, settings):
    assert_refused(client, settings, "letter.docx", builders.make_docx(), 422, "letter.docx is a damaged Word document")


def test_upload_without_a_file_field(client, settings):
    r = client.post("/api/documents", files={"document": ("a.txt", b"hello\n", "text/plain")})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("The request is missing or has invalid fields")
    assert_nothing_stored(client, settings)


def test_empty_file(client, settings):
    assert_refused(client, settings, "empty.txt", b"", 422, "empty.txt is empty")


def test_whitespace_only_text(client, settings):
    assert_refused(client, settings, "blank.txt", b"  \n\n\t\n", 422, "contains only white space")


@pytest.mark.both_databases
def test_corrupt_pdf(client, settings):
    data = b"%PDF-1.7\n" + bytes(range(256)).replace(b"\x00", b"") * 8 + b"\n%%EOF\n"
    assert_refused(client, settings, "broken.pdf", data, 422, "broken.pdf is a corrupt PDF that cannot be read")


def test_truncated_pdf(client, settings):
    data = builders.make_pdf(["Page one text.", "Page two text."])
    half = data[: len(data) // 2]
    assert_refused(client, settings, "cut.pdf", half, 422, "cut.pdf is a truncated or damaged PDF")
    # cut, then given a fake end marker: the structure is still missing
    assert_refused(client, settings, "cut.pdf", half + b"\n%%EOF\n", 422, "cut.pdf is a corrupt PDF")


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-128"])
def test_encrypted_pdf(client, settings, algorithm):
    data = builders.make_encrypted_pdf(["Top secret."], user_password="s3cret", algorithm=algorithm)
    assert_refused(client, settings, "locked.pdf", data, 422, "locked.pdf is an encrypted PDF", "password")


def test_pdf_without_text(client, settings):
    assert_refused(client, settings, "scan.pdf", builders.make_scanned_pdf(), 422, "has no extractable text", "OCR")


def test_invalid_utf8(client, settings):
    assert_refused(
        client, settings, "latin1.txt", "Café au lait\n".encode("latin-1"), 422,
        "latin1.txt is not valid UTF-8 text", "offset 3",
    )


def test_invalid_utf16_after_a_byte_order_mark(client, settings):
    data = "\ufeffodd".encode("utf-16-le") + b"\x00"  # an odd number of bytes
    assert_refused(client, settings, "odd.txt", data, 422, "odd.txt starts with a utf-16 byte-order mark")


def test_upload_just_over_the_limit(tmp_path):
    with app_client(tmp_path, max_upload_bytes=10_000) as (c, s):
        body = assert_refused(c, s, "big.txt", b"a" * 10_001, 413, "big.txt is 10,001 bytes", "10,000")
        assert set(body) == {"status_code", "detail"}
        assert created(c, "fits.txt", b"a" * 10_000)["size_bytes"] == 10_000


def test_upload_far_over_the_limit_is_stopped_by_the_body_limit(tmp_path):
    with app_client(tmp_path, max_upload_bytes=10_000) as (c, s):
        body = assert_refused(c, s, "huge.txt", b"a" * 400_000, 413, "larger than the 10,000-byte limit")
        assert set(body) == {"status_code", "detail"}
        assert c.get("/api/health").json()["status"] == "ok"


# --- hostile zips -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("builder", "phrases"),
    [
        (builders.zip_path_traversal, ["is unsafe", "'../evil.py' points outside the archive"]),
        (builders.zip_absolute_path, ["is unsafe", "'/etc/passwd' points outside the archive"]),
        (builders.zip_drive_letter, ["is unsafe", "'C:\\x.py' points outside the archive"]),
        (builders.zip_symlink, ["is unsafe", "'repo/passwd' is a symbolic link"]),
        (builders.zip_encrypted_member, ["has an encrypted entry ('repo/secret.py')", "without a password"]),
        (builders.zip_bomb, ["looks like an archive bomb", "'repo/zeros.txt' expands"]),
        (builders.zip_overlapping, ["is unsafe", "entries overlap"]),
        (builders.zip_lying_size, ["has a damaged entry 'repo/big.txt'"]),
    ],
    ids=["traversal", "absolute", "drive-letter", "symlink", "encrypted", "bomb", "overlap", "lying-size"],
)
def test_hostile_zip(client, settings, builder, phrases):
    assert_refused(client, settings, "hostile.zip", builder(), 422, "hostile.zip", *phrases)


def test_zip_with_too_many_entries(client, settings):
    n = settings.max_archive_entries + 1
    assert_refused(
        client, settings, "many.zip", builders.zip_many_entries(n), 422,
        f"many.zip has {n} entries", f"at most {settings.max_archive_entries}",
    )


def test_zip_declaring_too_much_data(tmp_path):
    with app_client(tmp_path, max_archive_bytes=200_000) as (c, s):
        data = builders.zip_over_declared_size(200_000)
        assert len(data) < 200_000  # the upload itself is small; its contents are not
        assert_refused(c, s, "big.zip", data, 422, "big.zip would unpack to", "the limit is 200,000 bytes")


def test_damaged_zip(client, settings):
    data = codebase_zip()
    assert_refused(client, settings, "damaged.zip", data[: len(data) // 2], 422, "damaged.zip is a damaged zip")


# --- the parse sandbox --------------------------------------------------------------------------


def test_parse_timeout_then_service_keeps_working(tmp_path):
    data = builders.make_many_page_pdf(300)
    with app_client(tmp_path, parse_timeout_s=0.05) as (c, s):
        assert_refused(c, s, "slow.pdf", data, 422, "slow.pdf took longer than 0.05 s to parse", "abandoned")
        s.parse_timeout_s = 60.0
        doc = created(c, "after.pdf", builders.make_pdf(["Still answering."]))
        assert doc["n_pages"] == 1
        assert len(stored_files(s)) == 1


def test_parse_memory_limit_then_service_keeps_working(tmp_path):
    # 40 MB of content stream deflated into ~40 KB: decompressing it needs the memory
    data = builders.make_padded_pdf("Heavy page.", 40 * 1024 * 1024)
    assert len(data) < 100_000
    with app_client(tmp_path, parse_memory_bytes=64 * 1024 * 1024) as (c, s):
        assert_refused(c, s, "heavy.pdf", data, 422, "heavy.pdf", "memory")
        s.parse_memory_bytes = 2 * 1024 * 1024 * 1024
        doc = created(c, "light.pdf", builders.make_pdf(["Page one.", "Page two."]))
        assert doc["n_pages"] == 2
        assert len(stored_files(s)) == 1


def test_pdf_decompression_bomb(client, settings):
    # past pypdf's own 75 MB decompression guard
    data = builders.make_padded_pdf("Bomb page.", 80_000_000)
    assert_refused(client, settings, "bomb.pdf", data, 422, "bomb.pdf", "unpacks to more than docqa reads safely")


def test_pdf_with_too_many_pages(tmp_path):
    with app_client(tmp_path, max_pdf_pages=3) as (c, s):
        data = builders.make_pdf(["1", "2", "3", "4"])
        assert_refused(c, s, "long.pdf", data, 422, "long.pdf has 4 pages", "at most 3")
        assert created(c, "short.pdf", builders.make_pdf(["1", "2", "3"]))["n_pages"] == 3


# --- service endpoints --------------------------------------------------------------------------


@pytest.mark.both_databases
def test_health(client):
    r = client.get("/api/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert r.json()["documents"] == 0
    created(client, "a.txt", b"a\n")
    assert client.get("/api/health").json()["documents"] == 1


def test_openapi_schema_lists_document_routes(client):
    r = client.get("/schema/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert "/api/documents" in paths
    assert "post" in paths["/api/documents"] and "get" in paths["/api/documents"]
    assert "/api/documents/{document_id}/sections" in paths


def test_an_upload_with_too_many_form_fields_is_413_with_a_sentence(client, settings):
    fields = {f"extra{i}": (None, "x") for i in range(12)}
    r = client.post("/api/documents", files={"file": ("a.txt", b"hello\n", "text/plain"), **fields})
    assert r.status_code == 413, r.text
    assert "more form fields than this server reads" in r.json()["detail"]
    assert_nothing_stored(client, settings)
