"""Documents as people have them: OCR pages/s on a 20-page scan, Word and HTML ingest throughput
against the parsing library alone, and the parse process's peak memory for each.

    python -m bench.run formats      # writes bench/results/formats.json

Every figure goes through docqa's real ingest (DocumentService.ingest: the sandboxed parse
process, token estimates, SQLite rows, the stored file). The baselines are the libraries doing the
least that still reads every word: python-docx iterating paragraphs and table cells, BeautifulSoup
taking the page's text. Targets are ratios within one run (DOCX ≥ 0.8× the library alone).
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path
from typing import Any

SCAN_PAGES = 20
A4_300DPI = (2480, 3508)
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def scan_pdf(pages: int) -> bytes:
    """`pages` A4 pages at 300 dpi, each an image of 30 lines of contract text (no text layer)."""
    from fpdf import FPDF
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(FONT, 42)
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=False)
    for p in range(pages):
        img = Image.new("L", A4_300DPI, 255)
        draw = ImageDraw.Draw(img)
        for n in range(30):
            line = f"{p + 1}.{n} The lessee shall pay the rent of {1000 + n} euros on day {n}."
            draw.text((200, 250 + n * 100), line, font=font, fill=0)
        buf = io.BytesIO()
        img.save(buf, "PNG")
        pdf.add_page()
        pdf.image(buf, x=0, y=0, w=210, h=297)
    return bytes(pdf.output())


def contract_docx(chapters: int = 40, paragraphs: int = 40) -> bytes:
    import docx

    d = docx.Document()
    for c in range(1, chapters + 1):
        d.add_heading(f"{c} Chapter {c}", 1)
        for n in range(1, paragraphs + 1):
            d.add_paragraph(f"Clause {c}.{n}: the supplier shall deliver item {n} of chapter {c} within {n} days, "
                            "and the customer shall pay within thirty days of the invoice.")
        table = d.add_table(rows=5, cols=3)
        for r in range(5):
            for k in range(3):
                table.cell(r, k).text = f"row {r} col {k} of {c}"
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def web_page(sections: int = 200) -> bytes:
    body = "".join(f"<h2>{s}. Section {s}</h2>" + "".join(
        f"<p>Paragraph {n} of section {s} says the service is <b>available</b> on day {n}.</p>" for n in range(20))
        for s in range(1, sections + 1))
    return (f"<!doctype html><html><head><title>Big page</title><script>var x = 1;</script></head><body>"
            f"<nav><a href='/'>Home</a></nav><main>{body}</main><footer>footer</footer></body></html>").encode()


def docx_library_alone(data: bytes) -> float:
    import docx
    from docx.table import Table

    t = time.perf_counter()
    document = docx.Document(io.BytesIO(data))
    words = []
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            words.extend(cell.text for row in block.rows for cell in row.cells)
        else:
            words.append(block.text)
    return time.perf_counter() - t


def html_library_alone(data: bytes) -> float:
    from bs4 import BeautifulSoup

    t = time.perf_counter()
    BeautifulSoup(data, "lxml").get_text("\n")
    return time.perf_counter() - t


def bench_formats() -> None:
    from bench.run import _best, _settings, write
    from docqa.documents import DocumentService
    from docqa.store.db import Database, migrate
    from docqa.store.files import BlobStore

    results: dict[str, Any] = {}
    scan = scan_pdf(SCAN_PAGES)
    word = contract_docx()
    page = web_page()
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(Path(tmp), parse_timeout_s=120)
        migrate(settings.resolved_database_url)
        db = Database(settings.resolved_database_url)
        service = DocumentService(settings, db, BlobStore(settings.blobs_dir))

        def ingest(name: str, data: bytes, suffix: bytes) -> tuple[float, Any]:
            t = time.perf_counter()
            r = service.ingest(name, data + suffix)
            return time.perf_counter() - t, r

        service.ingest("warm-up.txt", b"warm up\n")
        elapsed, r = ingest("scan.pdf", scan, b"\n%1\n")
        ocr = r.document.meta["ocr"]
        results["ocr"] = {
            "pages": SCAN_PAGES, "page_size": "A4, 300 dpi, 30 lines", "langs": ocr["langs"],
            "ingest_s": round(elapsed, 2), "ocr_s": ocr["seconds"],
            "pages_per_s": round(SCAN_PAGES / elapsed, 3), "mean_confidence": ocr["mean_confidence"],
            "parse_process_peak_rss_MiB": round(r.parse_peak_rss_bytes / 2**20, 1),
        }

        n = iter(range(10**6))
        base = _best(lambda: docx_library_alone(word))
        peaks: list[int] = []

        def docqa_docx() -> float:
            # a different tail each time so the upload is new (a zip ignores bytes after its directory)
            s, r = ingest(f"contract-{next(n)}.docx", word, b"")
            service.delete(r.document.id)
            peaks.append(r.parse_peak_rss_bytes)
            return s

        ours = _best(docqa_docx)
        results["docx"] = {
            "bytes": len(word), "paragraphs": 40 * 40, "tables": 40,
            "python_docx_alone_s": round(base, 3), "docqa_ingest_s": round(ours, 3),
            "ratio_docqa_vs_library": round(base / ours, 3), "target": 0.8,
            "parse_process_peak_rss_MiB": round(max(peaks) / 2**20, 1),
        }

        base = _best(lambda: html_library_alone(page))
        peaks = []

        def docqa_html() -> float:
            s, r = ingest(f"page-{next(n)}.html", page, b"")
            service.delete(r.document.id)
            peaks.append(r.parse_peak_rss_bytes)
            return s

        ours = _best(docqa_html)
        results["html"] = {
            "bytes": len(page), "beautifulsoup_alone_s": round(base, 3), "docqa_ingest_s": round(ours, 3),
            "ratio_docqa_vs_library": round(base / ours, 3),
            "parse_process_peak_rss_MiB": round(max(peaks) / 2**20, 1),
        }
        db.dispose()
    results["received"] = bench_received()
    write("formats", results)


# -- documents as reviewers receive them (issue #27), on files nobody on the team wrote -------------

MIRRORS = Path("/work/.mirror")
# (format, repository snapshot fetched with the search tool's `fetch`, how its files are picked)
RECEIVED_SOURCES = {
    "tarball": "SpamScope+mail-parser, dimastbk+python-calamine (git archive of HEAD)",
    "email": "SpamScope+mail-parser tests/mails/* (23 real and malformed messages, as .eml, and all as one .mbox)",
    "uslm": "usgpo+uslm previous/sample-files/114hr2029enr_good.xml, bill-version-samples-september-2024/*s1325rs.xml",
    "sheet": "dimastbk+python-calamine tests/data/*.xlsx|*.ods, jdum+odfdo tests/samples/*.ods",
    "akoma_ntoso": "laws-africa+indigo: the City of Cape Town Events By-law (26f2550 indigo_api/tests/xslt_fixtures/"
                   "act_text-general-input.xml), the Constitution of Tanzania in Swahili and a 2023 act "
                   "(HEAD indigo_api/tests/pdf_fixtures/swahili_in.xml, basic_in.xml)",
    "odt": "jdum+odfdo tests/samples/*.odt (LibreOffice documents of odfdo's test suite)",
    "rtf": "joshy+striprtf tests/rtf/*.rtf (Word, TextEdit, Google Docs files of striprtf's issue reporters)",
}


def _git(repo: str, *args: str) -> bytes:
    import subprocess

    return subprocess.run(["git", "-C", str(MIRRORS / repo / "repo"), *args], check=True,
                          capture_output=True).stdout


def _files(repo: str, prefix: str, suffixes: tuple[str, ...] = ()) -> list[tuple[str, bytes]]:
    names = _git(repo, "ls-tree", "-r", "--name-only", "HEAD", prefix).decode().split("\n")
    return [(n.rsplit("/", 1)[-1], _git(repo, "show", f"HEAD:{n}")) for n in names
            if n and (not suffixes or n.lower().endswith(suffixes))]


def received_inputs() -> dict[str, list[tuple[str, bytes]]]:
    mails = [(f"{name}.eml", data) for name, data in _files("SpamScope+mail-parser", "tests/mails")]
    mbox = b"".join(b"From bench@example.org Thu Jan  1 00:00:00 2025\n" + data.replace(b"\nFrom ", b"\n>From ")
                    + b"\n\n" for _, data in mails)
    return {
        "tarball": [("mail-parser.tar.gz", _git("SpamScope+mail-parser", "archive", "--format=tar.gz",
                                                "--prefix=mail-parser/", "HEAD")),
                    ("python-calamine.tar", _git("dimastbk+python-calamine", "archive", "--format=tar",
                                                 "--prefix=python-calamine/", "HEAD"))],
        "email": [*mails, ("mail-parser-tests.mbox", mbox)],
        "uslm": [(n, d) for n, d in _files("usgpo+uslm", "previous/sample-files/114hr2029enr_good.xml")]
        + _files("usgpo+uslm", "bill-version-samples-september-2024/BILLS-118s1325rs.xml"),
        "sheet": _files("dimastbk+python-calamine", "tests/data", (".xlsx", ".ods"))
        + _files("jdum+odfdo", "tests/samples", (".ods",)),
        "akoma_ntoso": [("cape-town-events-by-law.xml", _git("laws-africa+indigo", "show",
                                                             "26f255092f95f8c1d0ef126f4d26e6e63a13ad5e:indigo_api/"
                                                             "tests/xslt_fixtures/act_text-general-input.xml"))]
        + _files("laws-africa+indigo", "indigo_api/tests/pdf_fixtures/swahili_in.xml")
        + _files("laws-africa+indigo", "indigo_api/tests/pdf_fixtures/basic_in.xml"),
        "odt": _files("jdum+odfdo", "tests/samples", (".odt",)),
        "rtf": _files("joshy+striprtf", "tests/rtf", (".rtf",)),
    }


def _before(fmt: str, data: bytes) -> dict[str, Any]:
    """What docqa made of the file before #27: tarballs, spreadsheets and .odt refused (415); an .eml stored
    as plain text, headers and base64 and all; USLM and Akoma Ntoso as code with their markup; an .rtf as
    plain text with its control words (detect.py named no kind for .rtf and its content is ASCII)."""
    from docqa.tokens import estimate_tokens

    if fmt in ("tarball", "sheet", "odt"):
        return {"stored": False}
    text = data.decode("utf-8", "replace")
    return {"stored": True, "chars": len(text), "tokens": estimate_tokens(text)}


def bench_received() -> dict[str, Any]:
    from docqa.errors import DocqaError
    from docqa.ingest import ParseLimits
    from docqa.ingest.sandbox import parse_in_sandbox

    limits = ParseLimits(ocr=False)  # OCR is measured above; scanned attachments would dominate the times
    out: dict[str, Any] = {"sources": RECEIVED_SOURCES, "tokens": "cl100k (docqa's upload estimate)"}
    for fmt, files in received_inputs().items():
        rows = []
        for name, data in files:
            t = time.perf_counter()
            try:
                doc = parse_in_sandbox(data, name, limits, timeout_s=120, memory_bytes=4 * 1024**3)
            except DocqaError as exc:
                rows.append({"file": name, "bytes": len(data), "outcome": f"refused {exc.status_code}",
                             "detail": exc.detail, "parse_s": round(time.perf_counter() - t, 3)})
                continue
            rows.append({"file": name, "bytes": len(data), "outcome": "read", "kind": doc.kind, "parser": doc.parser,
                         "sections": len(doc.sections), "skipped": len(doc.skipped),
                         "parse_s": round(time.perf_counter() - t, 3), "chars": doc.n_chars,
                         "tokens": doc.token_estimate, "before": _before(fmt, data)})
        read = [r for r in rows if r["outcome"] == "read"]
        out[fmt] = {"files": len(rows), "read": len(read), "refused": len(rows) - len(read),
                    "parse_s_total": round(sum(r["parse_s"] for r in rows), 2), "each": rows}
    return out


# -- a question per format through the real embedded model, with its citation (issue #27) -----------

# (format, file name, (repository snapshot, commit, path) or a builder, question, words a right answer holds)
ASK_CASES: list[tuple[str, str, Any, str, str]] = [
    ("tarball", "kilo.tar.gz", ("antirez+kilo", "HEAD", "git archive README.md Makefile"),
     "In how many lines of code is Kilo written?", "1K"),
    ("eml", "mail_test_3.eml", ("SpamScope+mail-parser", "HEAD", "tests/mails/mail_test_3"),
     "Which file did the Firebox delete?", "export_pdf"),
    ("uslm", "115hr1362enr.xml", ("usgpo+uslm", "HEAD", "previous/sample-files/115hr1362enr_good.xml"),
     "What will the VA clinic in Pago Pago be known as?", "Faleomavaega"),
    ("xlsx", "table-multiple.xlsx", ("dimastbk+python-calamine", "HEAD", "tests/data/table-multiple.xlsx"),
     "What is the quantity of Banana?", "200"),
    ("ods", "any_sheets.ods", ("dimastbk+python-calamine", "HEAD", "tests/data/any_sheets.ods"),
     "Which sheets does this workbook contain?", "Hidden"),
    ("odt", "md_sample.odt", ("jdum+odfdo", "HEAD", "tests/samples/md_sample.odt"),
     "How old is Alice?", "30"),
    ("rtf", "nutridoc.rtf", ("joshy+striprtf", "HEAD", "tests/rtf/nutridoc.rtf"),
     "How much sugar goes into the bakewell fudge?", "900"),
    ("akoma_ntoso", "cape-town-events-by-law.xml",
     ("laws-africa+indigo", "26f255092f95f8c1d0ef126f4d26e6e63a13ad5e",
      "indigo_api/tests/xslt_fixtures/act_text-general-input.xml"),
     "How old must a person be to apply to hold an event?", "18"),
]


def _ask_input(source: tuple[str, str, str]) -> bytes:
    repo, commit, path = source
    if path.startswith("git archive "):
        return _git(repo, "archive", "--format=tar.gz", f"--prefix={repo.split('+')[1]}/", commit,
                    *path.split()[2:])
    return _git(repo, "show", f"{commit}:{path}")


def bench_ask(answer_tokens: int = 48, on_row: Any = None) -> dict[str, Any]:
    """Each file uploaded to the real app (sandboxed parse, SQLite), one session each, one question to the
    embedded model (greedy); the answer, its citations as the API gives them and as a reviewer reads them
    (docqa.ingest.where), and whether the answer holds the expected words."""
    from litestar.testing import TestClient

    from docqa.ingest.where import citation_label
    from docqa.settings import Settings
    from docqa.web.app import create_app

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, \
            TestClient(create_app(Settings(data_dir=Path(tmp) / "data")), base_url="http://127.0.0.1") as client:
        for fmt, name, source, question, expected in ASK_CASES:
            data = _ask_input(source)
            r = client.post("/api/documents", files={"file": (name, data, "application/octet-stream")})
            if r.status_code != 201:
                rows.append({"format": fmt, "file": name, "outcome": f"refused {r.status_code}", "detail": r.text})
                continue
            doc = r.json()
            sid = client.post("/api/sessions", json={"document_ids": [doc["id"]]}).json()["id"]
            t = time.perf_counter()
            r = client.post(f"/api/sessions/{sid}/questions", json={
                "question": question, "max_tokens": answer_tokens, "sampling": {"temperature": 0, "seed": 1}})
            elapsed = time.perf_counter() - t
            if r.status_code != 200:
                rows.append({"format": fmt, "file": name, "outcome": f"question failed {r.status_code}",
                             "detail": r.text[:500]})
                continue
            answer = r.json()
            sections = client.get(f"/api/documents/{doc['id']}/sections", params={"limit": 1000}).json()["items"]
            cites = [{"marker": c["marker"], "origin": c["origin"], "verified": c["verified"],
                      "quote": (c.get("quote") or "")[:160],
                      **{k: c.get(k) for k in ("page", "path", "line_start", "line_end", "clause", "para_start",
                                               "para_end")},
                      "label": citation_label(name, doc["kind"], doc.get("meta"), c),
                      "quote_at": _quote_at(name, doc, sections, c.get("quote") or "")} for c in answer["citations"]]
            shown = answer["answer"] or ""
            rows.append({
                "format": fmt, "file": name, "source": "/".join(source), "kind": doc["kind"],
                "document_tokens": doc["token_estimate"], "question": question, "expected": expected,
                "answer": shown[:600], "withheld": answer.get("draft") is not None,
                "draft": (answer.get("draft") or "")[:600], "right": expected.lower() in shown.lower(),
                "citations": cites, "answer_s": round(elapsed, 1)})
            print(f"{fmt:12} {name:30} right={rows[-1]['right']!s:5} {elapsed:6.1f}s "
                  f"{cites[0]['label'] if cites else '(no citation)'}", flush=True)
            if on_row is not None:
                on_row(_ask_summary(rows, answer_tokens))
    return _ask_summary(rows, answer_tokens)


def _quote_at(name: str, doc: dict[str, Any], sections: list[dict[str, Any]], quote: str) -> str | None:
    """Where the citation's quote is in the stored sections, worded per format (docqa.ingest.where): the
    place a citation of it should name, to compare with the citation the API gave."""
    from docqa.ingest.where import citation_label

    squash = " ".join(quote.split()).casefold()
    for width in range(6):  # the fewest lines that hold the quote
        for s in sections:
            lines = s["text"].split("\n")
            for i in range(len(lines) - width):
                j = i + width
                if squash and squash in " ".join(" ".join(lines[i:j + 1]).split()).casefold():
                    place = dict(s)
                    if s.get("para_start") is not None:
                        place.update(para_start=s["para_start"] + i, para_end=s["para_start"] + j)
                    elif s.get("line_start") is not None:
                        place.update(line_start=s["line_start"] + i, line_end=s["line_start"] + j)
                    return citation_label(name, doc["kind"], doc.get("meta"), place)
    return None


def _ask_summary(rows: list[dict[str, Any]], answer_tokens: int) -> dict[str, Any]:
    return {"model": "embedded (SmolLM2-135M-Instruct, greedy)", "answer_tokens": answer_tokens,
            "right": sum(1 for r in rows if r.get("right")), "asked": len(rows), "each": rows}


def main() -> None:
    """`python -m bench.formats received`: only the received formats, merged into formats.json;
    `python -m bench.formats ask`: a question per format through the embedded model (formats_ask.json)."""
    import json
    import sys

    from bench.run import RESULTS, write

    if sys.argv[1:] == ["ask"]:
        # written after every answer: the Akoma Ntoso by-law alone takes minutes on a loaded machine
        bench_ask(on_row=lambda result: write("formats_ask", result, quiet=True))
        return
    if sys.argv[1:] != ["received"]:
        raise SystemExit("usage: python -m bench.formats received|ask   (the rest: python -m bench.run formats)")
    path = RESULTS / "formats.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results.pop("benchmark", None)
    results.pop("machine", None)
    results["received"] = bench_received()
    write("formats", results, quiet=True)
    for fmt in ("tarball", "email", "uslm", "sheet", "akoma_ntoso", "odt", "rtf"):
        r = results["received"][fmt]
        print(fmt, r["files"], "read", r["read"], "refused", r["refused"], "parse_s", r["parse_s_total"])


if __name__ == "__main__":
    main()
