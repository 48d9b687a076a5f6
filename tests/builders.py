"""Generate the files the ingest tests upload: real PDFs (fpdf2 + pypdf), real and hostile zips.

Everything is built in memory at test time; nothing here is a mock. The hostile zips are valid
enough for Python's zipfile to list, and each carries exactly one defect.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

# --- PDFs ---------------------------------------------------------------------------------------


def make_pdf(pages: list[str]) -> bytes:
    """One page per string, Helvetica (Latin-1 text), with a real text layer."""
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=False)
    pdf.set_font("Helvetica", size=11)
    for text in pages:
        pdf.add_page()
        pdf.set_xy(15, 15)
        pdf.multi_cell(180, 6, text)
    return bytes(pdf.output())


def make_encrypted_pdf(pages: list[str], user_password: str = "s3cret", algorithm: str = "AES-128") -> bytes:
    """A text PDF that cannot be opened without `user_password`."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(pages))))
    writer.encrypt(user_password=user_password, owner_password="owner-" + user_password, algorithm=algorithm)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_scanned_pdf(n_pages: int = 2) -> bytes:
    """Pages with only drawings (what a scan looks like to a text extractor): no text layer at all."""
    pdf = FPDF(format="A4")
    for _ in range(n_pages):
        pdf.add_page()
        pdf.set_fill_color(40, 40, 40)
        pdf.rect(20, 20, 170, 120, style="F")
        pdf.set_draw_color(200, 0, 0)
        pdf.ellipse(40, 160, 120, 80, style="D")
        pdf.line(20, 260, 190, 280)
    return bytes(pdf.output())


def make_png(width: int = 4, height: int = 4) -> bytes:
    """A real (tiny, grey) PNG image."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


# --- zips ---------------------------------------------------------------------------------------


def make_zip(
    entries: dict[str, bytes],
    *,
    dirs: list[str] | None = None,
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    """A well-formed zip; `dirs` adds explicit directory entries (as GitHub's zips have)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for d in dirs or []:
            zf.writestr(zipfile.ZipInfo(d.rstrip("/") + "/"), b"")
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buf.getvalue()


def make_docx() -> bytes:
    """The zip skeleton of a Word document: a zip container that is not a codebase."""
    return make_zip({
        "[Content_Types].xml": b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                               b'package/2006/content-types"/>',
        "word/document.xml": b'<?xml version="1.0"?><w:document/>',
    })


def zip_path_traversal() -> bytes:
    return make_zip({"repo/ok.py": b"print('ok')\n", "../evil.py": b"import os\n"})


def zip_absolute_path() -> bytes:
    return make_zip({"/etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n"})


def zip_drive_letter() -> bytes:
    return make_zip({"C:\\x.py": b"print('windows')\n"})


def zip_symlink() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("repo/ok.py", b"print('ok')\n")
        link = zipfile.ZipInfo("repo/passwd")
        link.create_system = 3  # Unix
        link.external_attr = 0o120777 << 16  # S_IFLNK | rwxrwxrwx
        zf.writestr(link, b"/etc/passwd")
    return buf.getvalue()


def zip_encrypted_member() -> bytes:
    """Set the 'encrypted' flag bit on one member, in its local header and its central record."""
    data = bytearray(make_zip({"repo/ok.py": b"print('ok')\n", "repo/secret.py": b"KEY = 1\n"}))
    zf = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = zf.getinfo("repo/secret.py")
    local = info.header_offset
    assert data[local:local + 4] == b"PK\x03\x04"
    data[local + 6] |= 0x1  # general purpose bit flag, local header
    central = _central_record_offset(bytes(data), zf.start_dir, info.filename)
    data[central + 8] |= 0x1  # general purpose bit flag, central directory
    return bytes(data)


def zip_lying_size(declared: int = 100) -> bytes:
    """A member whose headers declare `declared` bytes but whose data inflates to 1 MB."""
    data = bytearray(make_zip({"repo/ok.py": b"print('ok')\n", "repo/big.txt": b"a" * 1024 * 1024}))
    zf = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = zf.getinfo("repo/big.txt")
    struct.pack_into("<L", data, info.header_offset + 22, declared)  # uncompressed size, local header
    central = _central_record_offset(bytes(data), zf.start_dir, info.filename)
    struct.pack_into("<L", data, central + 24, declared)  # uncompressed size, central directory
    return bytes(data)


def zip_many_entries(n: int) -> bytes:
    return make_zip({f"repo/f{i}.txt": b"x\n" for i in range(n)}, compression=zipfile.ZIP_STORED)


def zip_over_declared_size(total: int, member: int = 60_000) -> bytes:
    """Honest members of incompressible text whose sizes add up to more than `total` bytes."""
    import random

    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 "
    entries = {}
    for i in range(total // member + 1):
        lines = ("".join(rng.choice(alphabet) for _ in range(79)) for _ in range(member // 80))
        entries[f"repo/data{i}.txt"] = "\n".join(lines).encode()
    return make_zip(entries)


def zip_bomb(size: int = 5 * 1024 * 1024) -> bytes:
    """One member of `size` zero bytes, deflated to a few kilobytes."""
    return make_zip({"repo/ok.py": b"print('ok')\n", "repo/zeros.txt": b"\0" * size})


def zip_overlapping() -> bytes:
    """Two central-directory records pointing at the same local header (built by hand)."""
    name = b"repo/a.py"
    body = b"print('a')\n"
    crc = zlib.crc32(body)
    local = struct.pack(
        "<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, crc, len(body), len(body), len(name), 0
    ) + name + body

    def central(fname: bytes) -> bytes:
        return struct.pack(
            "<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, 0, 0, 0, 0,
            crc, len(body), len(body), len(fname), 0, 0, 0, 0, 0o100644 << 16, 0,
        ) + fname

    directory = central(name) + central(b"repo/b.py")
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 2, 2, len(directory), len(local), 0)
    return local + directory + end


def _central_record_offset(data: bytes, start_dir: int, filename: str) -> int:
    pos = start_dir
    while data[pos:pos + 4] == b"PK\x01\x02":
        n_name, n_extra, n_comment = struct.unpack("<3H", data[pos + 28:pos + 34])
        if data[pos + 46:pos + 46 + n_name].decode() == filename:
            return pos
        pos += 46 + n_name + n_extra + n_comment
    raise KeyError(filename)


LOREM = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 12


def make_many_page_pdf(n_pages: int, text: str = LOREM) -> bytes:
    """`n_pages` pages that share one content stream: big to parse, quick to build."""
    page = PdfReader(io.BytesIO(make_pdf([text]))).pages[0]
    writer = PdfWriter()
    for _ in range(n_pages):
        writer.add_page(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_padded_pdf(text: str, padding: int) -> bytes:
    """One text page whose content stream is padded with `padding` spaces, deflated: a small file that
    needs `padding` bytes of memory to decompress (how a PDF 'balloons' a parser)."""
    from pypdf.generic import DecodedStreamObject, NameObject

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([text]))))
    page = writer.pages[0]
    stream = DecodedStreamObject()
    stream.set_data(page.get_contents().get_data() + b" " * padding)
    page[NameObject("/Contents")] = writer._add_object(stream.flate_encode())
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
