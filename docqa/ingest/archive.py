"""A zip of a codebase: every text file becomes sections with its path and line numbers.

The archive is untrusted. Nothing is extracted to disk; each member is read through a byte counter
so a header that lies about sizes cannot inflate memory. Refused outright (422): paths that escape
the archive, symlinks, encrypted members, overlapping entries (this Python predates zipfile's own
check), two entries with one name, an entry without a name, too many entries, and too large a total
size or compression ratio. Skipped with a reason: binaries, minified and vendored files, lockfiles,
and anything a top-level .gitignore excludes.
"""

from __future__ import annotations

import io
import lzma
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import PurePosixPath

import pathspec

from docqa.errors import InvalidDocument
from docqa.ingest import ParsedSection, ParseLimits
from docqa.ingest.detect import MARKDOWN_EXTENSIONS
from docqa.ingest.text import looks_binary, normalize, split_lines

VENDORED_DIRS = {
    "node_modules", "vendor", "third_party", "third-party", "bower_components", ".git", ".hg", ".svn",
    "__pycache__", ".venv", "venv", "site-packages", ".tox", ".mypy_cache", ".pytest_cache", ".idea",
    "dist", "build", "target", ".next", ".gradle",
}
LOCKFILES = {"package-lock.json", "yarn.lock", "pnpm-lock.yaml", "poetry.lock", "cargo.lock", "uv.lock",
             "composer.lock", "gemfile.lock", "go.sum"}
_DRIVE = re.compile(r"^[A-Za-z]:")
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Member:
    """A regular file of an archive, once the archive's guards passed: its path (the archive's
    common top folder removed), its size, and how to read it (through a byte counter)."""

    path: str
    size: int
    read: Callable[[], bytes]


def parse_zip(data: bytes, name: str, limits: ParseLimits) -> tuple[list[ParsedSection], list[dict[str, str]]]:
    zf, infos = open_checked_zip(data, name, limits)
    files = [i for i in infos if not i.is_dir()]
    root = common_root([i.filename for i in files])
    members = [Member(i.filename[len(root):], i.file_size, partial(read_member, zf, i, name,
                                                                   limits.max_archive_file_bytes))
               for i in files]
    return codebase_sections(members, name, limits)


def codebase_sections(members: list[Member], name: str,
                      limits: ParseLimits) -> tuple[list[ParsedSection], list[dict[str, str]]]:
    """Every text file's line runs (path + lines), and the files skipped with the reason (zip and tar)."""
    gitignore = next((m for m in members if m.path == ".gitignore"), None)
    ignore = _gitignore(gitignore.read()) if gitignore and gitignore.size <= limits.max_archive_file_bytes else None
    sections: list[ParsedSection] = []
    skipped: list[dict[str, str]] = []
    total = 0
    for member in members:
        path = member.path
        reason = _skip_reason(path, member.size, ignore, limits)
        if reason:
            skipped.append({"path": path, "reason": reason})
            continue
        raw = member.read()
        total += len(raw)
        if total > limits.max_archive_bytes:
            raise InvalidDocument(f"{name} unpacks to more than {limits.max_archive_bytes:,} bytes.")
        text, why = member_text(raw)
        if text is None:
            skipped.append({"path": path, "reason": why})
            continue
        if _minified(text):
            skipped.append({"path": path, "reason": "minified"})
            continue
        markdown = PurePosixPath(path).suffix.lower() in MARKDOWN_EXTENSIONS
        sections.extend(split_lines(text, limits.section_max_chars, path=path, markdown=markdown))
    if not sections:
        raise InvalidDocument(f"{name} contains no readable text files ({len(skipped)} skipped).", skipped=skipped)
    return sections, skipped


def open_checked_zip(data: bytes, name: str, limits: ParseLimits) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    """The archive and its entries, once every archive limit holds (also for .docx files, which are zips)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidDocument(f"{name} is a damaged zip archive that cannot be read.") from exc
    if len(infos) > limits.max_archive_entries:
        raise InvalidDocument(
            f"{name} has {len(infos)} entries; docqa reads archives of at most {limits.max_archive_entries}."
        )
    seen: set[str] = set()
    for info in infos:
        _check_member(info, name, limits)
        if info.filename in seen:  # unzip tools disagree on which copy is real: a known smuggling trick
            raise InvalidDocument(f"{name} is unsafe: it has more than one entry named '{info.filename}'.")
        seen.add(info.filename)
    _check_no_overlap(data, infos, zf.start_dir, name)
    declared = sum(i.file_size for i in infos)
    if declared > limits.max_archive_bytes:
        raise InvalidDocument(
            f"{name} would unpack to {declared:,} bytes; the limit is {limits.max_archive_bytes:,} bytes."
        )
    return zf, infos


def _check_member(info: zipfile.ZipInfo, name: str, limits: ParseLimits) -> None:
    fn = info.filename
    if not fn:
        raise InvalidDocument(f"{name} is a damaged zip archive: one of its entries has no name.")
    parts = re.split(r"[\\/]", fn)
    if fn.startswith(("/", "\\")) or _DRIVE.match(fn) or ".." in parts:
        raise InvalidDocument(f"{name} is unsafe: the entry '{fn}' points outside the archive.")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InvalidDocument(f"{name} is unsafe: the entry '{fn}' is a symbolic link.")
    if info.flag_bits & 0x1:
        raise InvalidDocument(f"{name} has an encrypted entry ('{fn}'); upload an archive without a password.")
    if info.file_size > 64 * 1024 and info.file_size > limits.max_archive_ratio * max(info.compress_size, 1):
        raise InvalidDocument(
            f"{name} looks like an archive bomb: '{fn}' expands {info.file_size // max(info.compress_size, 1):,}"
            f" times (the limit is {limits.max_archive_ratio})."
        )


def _check_no_overlap(data: bytes, infos: list[zipfile.ZipInfo], start_dir: int, name: str) -> None:
    """Each member's local header + data must end before the next begins (no shared bytes)."""
    spans = []
    for info in infos:
        off = info.header_offset
        header = data[off:off + _LOCAL_HEADER.size]
        if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise InvalidDocument(f"{name} is a damaged zip archive (bad entry header for '{info.filename}').")
        fields = _LOCAL_HEADER.unpack(header)
        end = off + _LOCAL_HEADER.size + fields[-2] + fields[-1] + info.compress_size
        spans.append((off, end, info.filename))
    spans.sort()
    for (_, end, fn), (nxt, _, _) in zip(spans, spans[1:], strict=False):
        if end > nxt:
            raise InvalidDocument(f"{name} is unsafe: its entries overlap (at '{fn}'), a known archive-bomb trick.")
    if spans and spans[-1][1] > start_dir:
        raise InvalidDocument(f"{name} is unsafe: an entry overlaps the archive's directory.")


def common_root(names: list[str]) -> str:
    """'repo-main/' when every file sits in that one folder (GitHub's zips), else ''."""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and all("/" in n for n in names):
        return tops.pop() + "/"
    return ""


def _gitignore(raw: bytes) -> pathspec.PathSpec | None:
    lines = raw.decode("utf-8", "replace").splitlines()
    try:
        return pathspec.GitIgnoreSpec.from_lines(lines)
    except (ValueError, re.error):  # like git, skip the patterns it cannot use ("!", a lone "\\", "[z-a]" …)
        return pathspec.GitIgnoreSpec.from_lines([line for line in lines if _valid_pattern(line)])


def _valid_pattern(line: str) -> bool:
    try:
        pathspec.GitIgnoreSpec.from_lines([line])
    except (ValueError, re.error):
        return False
    return True


def _skip_reason(path: str, size: int, ignore: pathspec.PathSpec | None, limits: ParseLimits) -> str:
    parts = PurePosixPath(path).parts
    if any(p in VENDORED_DIRS for p in parts[:-1]):
        return "vendored or generated folder"
    lower = parts[-1].lower()
    if lower in LOCKFILES:
        return "lockfile"
    if ".min." in lower:
        return "minified"
    if ignore is not None and ignore.match_file(path):
        return "excluded by .gitignore"
    if size > limits.max_archive_file_bytes:
        return f"larger than {limits.max_archive_file_bytes:,} bytes"
    return ""


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, cap: int) -> bytes:
    """Read through a counter: never more than the declared size, nor more than `cap`."""
    limit = min(info.file_size, cap)
    buf = bytearray()
    try:
        with zf.open(info) as fh:
            while chunk := fh.read(CHUNK):
                buf += chunk
                if len(buf) > limit:
                    raise InvalidDocument(f"{name} is unsafe: '{info.filename}' is larger than its header says.")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error, lzma.LZMAError) as exc:
        raise InvalidDocument(f"{name} has a damaged entry '{info.filename}' ({exc}).") from exc
    return bytes(buf)


def member_text(raw: bytes) -> tuple[str | None, str]:
    if looks_binary(raw):
        return None, "binary"
    try:
        return normalize(raw.decode("utf-8-sig")), ""
    except UnicodeDecodeError:
        return None, "not UTF-8 text"


def _minified(text: str) -> bool:
    lines = text.count("\n") + 1
    return len(text) > 2000 and len(text) / lines > 400
