"""Decide what an upload is from its content, and refuse a name that contradicts it."""

from __future__ import annotations

import io
import zipfile
from pathlib import PurePosixPath

import filetype

from docqa.errors import UnsupportedDocument
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
PDF_EXTENSIONS = {".pdf"}
DOCX_EXTENSIONS = {".docx"}
HTML_EXTENSIONS = {".html", ".htm", ".xhtml"}

MEDIA_TYPES = {"pdf": "application/pdf", "archive": "application/zip", "markdown": "text/markdown"}

SUPPORTED = "PDF, Word (.docx), HTML, plain text, Markdown, source code or a .zip of a codebase"
_HTML_START = (b"<!doctype html", b"<html")


def sniff(data: bytes) -> str:
    """'pdf', 'docx', 'zip', 'html', 'text' or 'binary' from the bytes alone."""
    if data[:1024].lstrip().startswith(b"%PDF-"):
        return "pdf"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "docx" if _zip_is_docx(data) else "zip"
    if looks_binary(data):
        return "binary"
    if data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower().startswith(_HTML_START):
        return "html"
    return "text"


def _zip_is_docx(data: bytes) -> bool:
    """A Word package: the zip holds word/document.xml and [Content_Types].xml (read from its directory only)."""
    from docqa.ingest.docx import is_docx

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return is_docx(set(zf.namelist()))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False


def extension_kind(filename: str) -> tuple[str | None, str]:
    p = PurePosixPath(filename.replace("\\", "/"))
    ext = p.suffix.lower()
    if ext in PDF_EXTENSIONS:
        return "pdf", ext
    if ext in ARCHIVE_EXTENSIONS:
        return "zip", ext
    if ext in DOCX_EXTENSIONS:
        return "docx", ext
    if ext in HTML_EXTENSIONS:
        return "html", ext
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
    """Return 'pdf', 'docx', 'zip', 'html' or 'text', or raise UnsupportedDocument (415)."""
    content = sniff(data)
    named, ext = extension_kind(filename)
    if content == "html" and named == "text":  # an .md or .txt that starts with markup is still what it says
        content = "text"
    if named == "html" and content == "text":  # a fragment or a page without a doctype
        content = "html"
    if named == "pdf" and content != "pdf" and b"%PDF-" in data[:1024]:
        # PDF readers accept the header anywhere in the first 1024 bytes; a text file may merely mention it
        content = "pdf"
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
    return {"pdf": "a PDF", "zip": "a zip archive", "text": "text", "docx": "a Word document",
            "html": "a web page (HTML)"}[kind]


def text_kind(filename: str) -> tuple[str, str]:
    """(kind, media_type) for a text upload: Markdown and plain text are 'text', the rest 'code'."""
    p = PurePosixPath(filename.replace("\\", "/"))
    ext = p.suffix.lower()
    if ext in MARKDOWN_EXTENSIONS:
        return "text", MEDIA_TYPES["markdown"]
    if ext in CODE_EXTENSIONS or p.name.lower() in CODE_FILENAMES:
        return "code", "text/x-source"
    return "text", "text/plain"
