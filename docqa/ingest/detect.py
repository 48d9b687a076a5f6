"""Decide what an upload is from its content, and refuse a name that contradicts it."""

from __future__ import annotations

import bz2
import io
import lzma
import zipfile
import zlib
from pathlib import PurePosixPath

import filetype

from docqa.errors import InvalidDocument, UnsupportedDocument
from docqa.ingest.text import looks_binary

TEXT_EXTENSIONS = {".txt", ".text", ".md", ".markdown", ".rst", ".adoc", ".org", ".log", ".csv", ".tsv"}
MARKDOWN_EXTENSIONS = {".md", ".markdown"}
CODE_EXTENSIONS = {
    ".py", ".pyi", ".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx", ".java", ".kt", ".kts", ".scala", ".groovy",
    ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".cs", ".go", ".rs", ".rb", ".php", ".swift", ".m",
    ".mm", ".sh", ".bash", ".zsh", ".fish", ".ps1", ".sql", ".css", ".scss", ".sass", ".less",
    ".json", ".jsonl", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf", ".xml", ".lua", ".r", ".pl", ".pm",
    ".hs", ".ex", ".exs", ".erl", ".clj", ".cljs", ".dart", ".vue", ".svelte", ".proto", ".gradle", ".cmake",
    ".mk", ".tf", ".nix", ".zig", ".jl", ".ml", ".mli", ".fs", ".vb", ".asm", ".s", ".graphql", ".env",
}
CODE_FILENAMES = {"makefile", "dockerfile", "cmakelists.txt", "gemfile", "rakefile", "procfile", "justfile"}
ARCHIVE_EXTENSIONS = {".zip"}
TAR_SUFFIXES = (".tar", ".tgz", ".tar.gz", ".tbz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz")
PDF_EXTENSIONS = {".pdf"}
DOCX_EXTENSIONS = {".docx"}
HTML_EXTENSIONS = {".html", ".htm", ".xhtml"}
MAIL_EXTENSIONS = {".eml": "email", ".mbox": "mbox"}
SHEET_EXTENSIONS = {".xlsx", ".xlsm", ".ods"}
ODT_EXTENSIONS = {".odt"}
RTF_EXTENSIONS = {".rtf"}

MEDIA_TYPES = {"pdf": "application/pdf", "archive": "application/zip", "markdown": "text/markdown"}

SUPPORTED = ("PDF, Word (.docx), OpenDocument text (.odt), RTF, a spreadsheet (.xlsx, .ods), HTML, "
             "e-mail (.eml, .mbox), plain text, Markdown, "
             "source code or a .zip or tarball of a codebase")
_HTML_START = (b"<!doctype html", b"<html")


def sniff(data: bytes) -> str:
    """'pdf', 'docx', 'zip', 'tar', 'rtf', 'html', 'text' or 'binary' from the bytes alone."""
    if data[:1024].lstrip().startswith(b"%PDF-"):
        return "pdf"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "docx" if _zip_is_docx(data) else "zip"
    if _is_tar(_tar_head(data)):
        return "tar"
    if data[:16].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{\\rtf"):  # before the binary check: \bin data
        return "rtf"
    if looks_binary(data):
        return "binary"
    if data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower().startswith(_HTML_START):
        return "html"
    return "text"


def is_docx(names: set[str]) -> bool:
    return "word/document.xml" in names and "[Content_Types].xml" in names


def _tar_head(data: bytes) -> bytes:
    """The first 512 bytes, decompressed when the upload is gzip, bzip2 or xz (never more than that)."""
    try:
        if data.startswith(b"\x1f\x8b"):
            return zlib.decompressobj(wbits=31).decompress(data[:65536], 512)
        if data.startswith(b"BZh"):
            return bz2.BZ2Decompressor().decompress(data[:65536], max_length=512)
        if data.startswith(b"\xfd7zXZ\x00"):
            return lzma.LZMADecompressor().decompress(data[:65536], max_length=512)
    except (zlib.error, OSError, lzma.LZMAError, EOFError):
        return b""
    return data[:512]


def _is_tar(head: bytes) -> bool:
    """A POSIX (ustar/pax) or GNU tar header: its magic at offset 257."""
    return head[257:262] == b"ustar"


def _zip_is_docx(data: bytes) -> bool:
    """A Word package: the zip holds word/document.xml and [Content_Types].xml (read from its directory only)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return is_docx(set(zf.namelist()))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False


def extension_kind(filename: str) -> tuple[str | None, str]:
    p = PurePosixPath(filename.replace("\\", "/"))
    ext = p.suffix.lower()
    if p.name.lower().endswith(TAR_SUFFIXES):
        return "tar", ext
    if ext in PDF_EXTENSIONS:
        return "pdf", ext
    if ext in ARCHIVE_EXTENSIONS:
        return "zip", ext
    if ext in DOCX_EXTENSIONS:
        return "docx", ext
    if ext in HTML_EXTENSIONS:
        return "html", ext
    if ext in MAIL_EXTENSIONS:
        return MAIL_EXTENSIONS[ext], ext
    if ext in SHEET_EXTENSIONS:
        return "sheet", ext
    if ext in ODT_EXTENSIONS:
        return "odt", ext
    if ext in RTF_EXTENSIONS:
        return "rtf", ext
    if ext in TEXT_EXTENSIONS or ext in CODE_EXTENSIONS or p.name.lower() in CODE_FILENAMES:
        return "text", ext
    return None, ext


def describe_binary(data: bytes) -> str:
    guess = filetype.guess(data[:8192])
    if guess is not None:
        kind = guess.extension.upper()
        return f"{'an' if kind[:1] in 'AEIOU' else 'a'} {kind} file ({guess.mime})"
    return "binary data"


def detect(data: bytes, filename: str) -> str:
    """'pdf', 'docx', 'zip', 'tar', 'html', 'email', 'mbox', 'sheet', 'odt', 'rtf' or 'text', or
    UnsupportedDocument (415)."""
    content = sniff(data)
    named, ext = extension_kind(filename)
    if content in ("html", "rtf") and named == "text":  # an .md or .txt that starts with markup is still what it says
        content = "text"
    if named == "html" and content == "text":  # a fragment or a page without a doctype
        content = "html"
    if named in ("email", "mbox") and content in ("text", "html", "binary"):
        # a message is text with headers; 8-bit bodies, and a NUL in one, are still a message
        content = named
    if named == "pdf" and content != "pdf" and b"%PDF-" in data[:1024]:
        # PDF readers accept the header anywhere in the first 1024 bytes; a text file may merely mention it
        content = "pdf"
    if ext in (".docx", ".xlsx", ".xlsm") and data.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        # Office saves a password-protected .docx/.xlsx as an encrypted package inside an OLE2 file
        raise InvalidDocument(
            f"{filename} is password-protected (an encrypted Office file). Remove the password (File › Info › "
            "Protect › Encrypt with Password, then clear it), save, and upload it again.")
    if named == "sheet" and content == "zip":  # a workbook is a zip; calamine tells a damaged one apart
        content = "sheet"
    if named == "odt" and content == "zip":  # an OpenDocument text is a zip; odt.py tells a damaged one apart
        content = "odt"
    if ext == ".msg":
        raise UnsupportedDocument(
            f"{filename} is an Outlook message (.msg), which docqa does not read. Save it as an .eml file "
            "(Outlook on the web and Thunderbird: Save as / Download; Outlook for Windows: drag it out of "
            "Outlook as .eml or use File › Save As › Outlook Message Format - Unicode then convert), or "
            "export the folder as .mbox."
        )
    if content == "binary":
        raise UnsupportedDocument(
            f"{filename} looks like {describe_binary(data)}, which docqa cannot read. Upload {SUPPORTED}."
        )
    if content in ("zip", "docx") and named is None and ext:
        # .xlsx, .pptx, .jar, .epub … are zips too, but not codebases.
        raise UnsupportedDocument(
            f"{filename} is a {ext} file (a zip container), which docqa cannot read. Upload {SUPPORTED}."
        )
    if named is not None and named != content:
        raise UnsupportedDocument(
            f"{filename} is named like {_label(named)} but its content is {_label(content)}. "
            "Rename it to match what it contains, or upload the right file."
        )
    return content


def _label(kind: str) -> str:
    return {"pdf": "a PDF", "zip": "a zip archive", "tar": "a tar archive", "text": "text", "docx": "a Word document",
            "html": "a web page (HTML)",
            "email": "an e-mail message", "mbox": "a mailbox", "sheet": "a spreadsheet",
            "odt": "an OpenDocument text", "rtf": "an RTF document"}[kind]


def text_kind(filename: str) -> tuple[str, str]:
    """(kind, media_type) for a text upload: Markdown and plain text are 'text', the rest 'code'."""
    p = PurePosixPath(filename.replace("\\", "/"))
    ext = p.suffix.lower()
    if ext in MARKDOWN_EXTENSIONS:
        return "text", MEDIA_TYPES["markdown"]
    if ext in CODE_EXTENSIONS or p.name.lower() in CODE_FILENAMES:
        return "code", "text/x-source"
    return "text", "text/plain"
