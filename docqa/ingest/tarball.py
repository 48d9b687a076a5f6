"""A tarball of a codebase (.tar, .tar.gz/.tgz, .tar.bz2, .tar.xz), read like its zip: path + lines.

The archive is untrusted and nothing is extracted to disk. tarfile reads it as a stream (`r|*`),
one member at a time, so a compressed archive is decompressed once, front to back, and never
seeked back into. Each header is checked before the member's data is decompressed, so a member
that declares gigabytes is refused before any of them are produced:

- tarfile's own `data` filter (PEP 706) refuses absolute paths, paths that leave the archive and
  device files, FIFOs and other special members; docqa refuses every link too (symbolic or hard),
  and two members with one name, as it does in a zip;
- limits: the member count, each file's size (larger files are skipped, as in a zip), the total
  declared size, and for a compressed archive the ratio of that total to the upload's size (a
  bomb: a few kilobytes that declare gigabytes of zeros);
- what a member holds is read through a byte counter, never more than its header declares.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import zlib
from functools import partial

from docqa.errors import InvalidDocument
from docqa.ingest import ParsedSection, ParseLimits
from docqa.ingest.archive import CHUNK, Member, codebase_sections, common_root

MEDIA_TYPES = {"tar": "application/x-tar", "gz": "application/gzip", "bz2": "application/x-bzip2",
               "xz": "application/x-xz"}
# the sizes a header may declare below which the compression ratio is not checked (a tiny archive of
# one small, repetitive file compresses well and harms nobody)
_RATIO_FLOOR = 1024 * 1024


def parse_tar(data: bytes, name: str, limits: ParseLimits) -> tuple[list[ParsedSection], list[dict[str, str]]]:
    files = _read_checked(data, name, limits)
    root = common_root([path for path, _, _ in files])
    members = [Member(path[len(root):], size, partial(_given, raw)) for path, size, raw in files]
    return codebase_sections(members, name, limits)


def compression(data: bytes) -> str:
    """'gz', 'bz2', 'xz' or 'tar' (none) from the magic bytes."""
    if data.startswith(b"\x1f\x8b"):
        return "gz"
    if data.startswith(b"BZh"):
        return "bz2"
    if data.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    return "tar"


def _given(raw: bytes) -> bytes:
    return raw


def _read_checked(data: bytes, name: str, limits: ParseLimits) -> list[tuple[str, int, bytes]]:
    """(path, size, bytes) of every regular file, once its header passed every guard; the bytes of a
    file over the per-file limit are not read (b"", its size says why it is skipped)."""
    compressed = compression(data) != "tar"
    out: list[tuple[str, int, bytes]] = []
    seen: set[str] = set()
    declared = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|*") as tf:
            for count, member in enumerate(tf, start=1):
                if count > limits.max_archive_entries:
                    raise InvalidDocument(
                        f"{name} has more than {limits.max_archive_entries} entries; docqa reads archives of at most "
                        f"{limits.max_archive_entries}.")
                path = _checked_member(member, name).name
                if path in seen:
                    raise InvalidDocument(f"{name} is unsafe: it has more than one entry named '{path}'.")
                seen.add(path)
                declared += member.size
                _check_sizes(declared, len(data), compressed, name, limits)
                if not member.isfile():
                    continue
                raw = b"" if member.size > limits.max_archive_file_bytes else _read_member(tf, member, name)
                out.append((path, member.size, raw))
    except (tarfile.TarError, EOFError, OSError, zlib.error, ValueError) as exc:
        raise InvalidDocument(f"{name} is a damaged tar archive that cannot be read ({_reason(exc)}).") from exc
    return out


def _checked_member(member: tarfile.TarInfo, name: str) -> tarfile.TarInfo:
    shown = member.name
    if shown.startswith("/") or "\\" in shown or ".." in shown.split("/"):
        raise InvalidDocument(f"{name} is unsafe: the entry '{shown}' points outside the archive.")
    if member.issym() or member.islnk():
        raise InvalidDocument(f"{name} is unsafe: the entry '{shown}' is a link (docqa reads no links in archives).")
    try:
        # the destination is a placeholder: nothing is written; the filter judges the path and the type
        filtered = tarfile.data_filter(member, "/archive")
    except tarfile.SpecialFileError as exc:
        raise InvalidDocument(f"{name} is unsafe: the entry '{shown}' is a device file or another special file.") \
            from exc
    except (tarfile.AbsolutePathError, tarfile.OutsideDestinationError) as exc:
        raise InvalidDocument(f"{name} is unsafe: the entry '{shown}' points outside the archive.") from exc
    except tarfile.FilterError as exc:
        raise InvalidDocument(f"{name} is unsafe: the entry '{shown}' is refused ({exc}).") from exc
    # `tar -C dir .` writes every name as ./name; "a/./b" and "a//b" are "a/b" to every tar tool
    path = posixpath.normpath(filtered.name).lstrip("/")
    if path == ".":
        path = ""
    if not path and not filtered.isdir():
        raise InvalidDocument(f"{name} is a damaged tar archive: one of its entries has no name.")
    return filtered.replace(name=path, deep=False)


def _check_sizes(declared: int, upload: int, compressed: bool, name: str, limits: ParseLimits) -> None:
    if declared > limits.max_archive_bytes:
        raise InvalidDocument(
            f"{name} would unpack to more than {limits.max_archive_bytes:,} bytes; the limit is "
            f"{limits.max_archive_bytes:,} bytes.")
    if compressed and declared > _RATIO_FLOOR and declared > limits.max_archive_ratio * upload:
        raise InvalidDocument(
            f"{name} looks like an archive bomb: its {upload:,} bytes expand to more than {declared:,} "
            f"({declared // max(upload, 1):,} times; the limit is {limits.max_archive_ratio}).")


def _read_member(tf: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> bytes:
    """The member's bytes, never more than its header declares."""
    fh = tf.extractfile(member)
    if fh is None:
        return b""
    buf = bytearray()
    while chunk := fh.read(min(CHUNK, member.size - len(buf) + 1)):
        buf += chunk
        if len(buf) > member.size:
            raise InvalidDocument(f"{name} is unsafe: '{member.name}' is larger than its header says.")
    return bytes(buf)


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
