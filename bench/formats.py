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
    write("formats", results)
