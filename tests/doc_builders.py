"""Generate documents as people have them: scanned PDFs (text drawn into an image, no text layer),
encrypted and damaged PDFs, Word files built with python-docx (headings, numbered clauses, a table,
a tracked change), web pages, and hostile .docx zips. Everything is made in memory at test time.
"""

from __future__ import annotations

import io
import zipfile

import docx
from docx.oxml import parse_xml
from docx.oxml.ns import nsdecls
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

from tests.builders import make_pdf, make_zip

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"  # Debian's fonts-dejavu-core (make ocr-deps)
PAGE_PX = (1240, 874)  # A6 landscape at 300 dpi: small pages keep OCR quick


def scan_image(lines: list[str], *, rtl: bool = False) -> bytes:
    """A PNG of black text on white, as a scanner would deliver a page (Arabic shaped right to left)."""
    img = Image.new("L", PAGE_PX, 255)
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(FONT, 40)
    y = 80
    for line in lines:
        if rtl:
            width = draw.textlength(line, font=font, direction="rtl", language="ar")
            draw.text((PAGE_PX[0] - 80 - width, y), line, font=font, fill=0, direction="rtl", language="ar")
        else:
            draw.text((80, y), line, font=font, fill=0)
        y += 70
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def scanned_pdf(pages: list[str | bytes]) -> bytes:
    """One page per item: a str becomes a page with a real text layer, PNG bytes a scanned page."""
    pdf = FPDF(orientation="L", format=(105, 148))
    pdf.set_auto_page_break(auto=False)
    for item in pages:
        pdf.add_page()
        if isinstance(item, str):
            pdf.set_font("Helvetica", size=11)
            pdf.set_xy(10, 10)
            pdf.multi_cell(120, 6, item)
        else:
            pdf.image(io.BytesIO(item), x=0, y=0, w=148, h=105)
    return bytes(pdf.output())


def pdf_pypdf_rejects(pages: list[str]) -> bytes:
    """A text PDF whose catalog points at its page tree with a wrong generation number: pypdf gives up
    ("Invalid object in /Pages"), PDFium, like most readers, finds the object anyway."""
    data = make_pdf(pages)
    assert b"/Pages 1 0 R" in data
    return data.replace(b"/Pages 1 0 R", b"/Pages 1 7 R", 1)


def _tracked(kind: str, text: str, rid: int) -> object:
    tag = "w:delText" if kind == "del" else "w:t"
    return parse_xml(f'<w:{kind} {nsdecls("w")} w:id="{rid}" w:author="Counsel" w:date="2024-05-01T00:00:00Z">'
                     f'<w:r><{tag} xml:space="preserve">{text}</{tag}></w:r></w:{kind}>')


def contract_docx() -> bytes:
    """A Word contract: a title and preamble, numbered headings, auto-numbered clauses, a table, and a
    tracked change (thirty → sixty) in clause 4.2."""
    d = docx.Document()
    d.add_paragraph("Master Services Agreement", style="Title")
    d.add_paragraph("This agreement is made between Acme Ltd and Beta GmbH.")
    d.add_heading("1 Definitions", 1)
    d.add_paragraph("Words have the meanings given in this clause.")
    d.add_heading("4 Termination", 1)
    d.add_paragraph("Either party may end this agreement as set out below.")
    d.add_heading("4.2 Notice", 2)
    d.add_paragraph("Notice must be given in writing.", style="List Number")
    d.add_paragraph("Notice is sent to the registered address.", style="List Number")
    p = d.add_paragraph("The notice period is ")
    p._p.append(_tracked("del", "thirty", 1))
    p._p.append(_tracked("ins", "sixty", 2))
    p.add_run(" days.")
    table = d.add_table(rows=2, cols=2)
    for (r, c), text in {(0, 0): "Fee", (0, 1): "Amount", (1, 0): "Monthly fee", (1, 1): "EUR 4,200"}.items():
        table.cell(r, c).text = text
    d.add_heading("5 Liability", 1)
    d.add_paragraph("Liability is capped at the fees of one year.")
    out = io.BytesIO()
    d.save(out)
    return out.getvalue()


def docx_with_entries(n_extra: int) -> bytes:
    """A real Word file with `n_extra` more (tiny) entries added to its zip."""
    src = zipfile.ZipFile(io.BytesIO(contract_docx()))
    entries = {i.filename: src.read(i) for i in src.infolist()}
    entries.update({f"customXml/item{i}.xml": b"<x/>" for i in range(n_extra)})
    return make_zip(entries)


def docx_bomb(size: int = 20 * 1024 * 1024) -> bytes:
    """A Word file whose document.xml unpacks a thousand times larger than it is stored."""
    src = zipfile.ZipFile(io.BytesIO(contract_docx()))
    entries = {i.filename: src.read(i) for i in src.infolist()}
    body = entries["word/document.xml"]
    entries["word/document.xml"] = body.replace(b"</w:body>", b" " * size + b"</w:body>")
    return make_zip(entries)


def docx_with_entities() -> bytes:
    """A Word file whose document.xml declares an entity in a DOCTYPE (Word never writes one) and uses it,
    and an undeclared one, inside w:t runs, with text after each."""
    src = zipfile.ZipFile(io.BytesIO(contract_docx()))
    entries = {i.filename: src.read(i) for i in src.infolist()}
    body = entries["word/document.xml"]
    head, sep, rest = body.partition(b"?>")
    head = head.replace(b"standalone='yes'", b"")  # a standalone document with an undeclared entity is not XML
    doctype = b'<!DOCTYPE w:document SYSTEM "word.dtd" [<!ENTITY party "Gamma SA">]>'
    rest = rest.replace(b"Liability is capped at the fees of one year.",
                        b"Liability is capped by &party; at one year, or &undeclared; at two.", 1)
    entries["word/document.xml"] = head + sep + doctype + rest
    return make_zip(entries)


def other_zip_named_docx() -> bytes:
    return make_zip({"notes/readme.txt": b"not a Word document\n", "notes/data.csv": b"a,b\n1,2\n"})


PAGE_HTML = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Acme privacy policy</title>
<style>body { font-family: sans-serif } .secret { color: red }</style>
<script>var tracking = "SCRIPT-TEXT"; document.write("injected");</script></head>
<body>
<nav><a href="/">Home</a> <a href="/about">About us</a> <a href="/jobs">Careers</a></nav>
<header><p>Acme site header with a banner</p></header>
<main>
  <h1>Privacy policy</h1>
  <p>We keep <b>very little</b> data about you.</p>
  <h2>1. Cookies</h2>
  <p>We use one session cookie.</p>
  <ul><li>It expires after one day.</li><li>It is never shared.</li></ul>
  <table><tr><th>Cookie</th><th>Lifetime</th></tr><tr><td>sid</td><td>1 day</td></tr></table>
  <h2>2. Contact</h2>
  <div>Write to privacy@acme.example.</div>
  <script>alert("SCRIPT-IN-MAIN")</script>
  <noscript>Enable JavaScript</noscript>
</main>
<aside>Related articles you may like</aside>
<footer>Copyright Acme 2024</footer>
</body></html>
"""
