"""Tarballs of a codebase (.tar, .tar.gz/.tgz, .tar.bz2, .tar.xz), end to end over HTTP: read like the zip
of the same files (path + lines, the same skips), and hostile tarballs refused with a sentence. Every
tarball is built here with the standard library's tarfile; the app, its parse sandbox and SQLite are real.
"""

from __future__ import annotations

import io
import tarfile
import time

import pytest

from docqa.errors import InvalidDocument
from docqa.ingest import ParseLimits
from docqa.ingest.parse import parse_upload
from tests.test_ingest import (
    APP_PY,
    README,
    UTIL_PY,
    all_sections,
    app_client,
    assert_lines_match,
    assert_refused,
    codebase_zip,
    created,
)

FILES = {
    "repo-1.0/.gitignore": b"secret.env\n*.log\n",
    "repo-1.0/README.md": README.encode(),
    "repo-1.0/src/app.py": APP_PY.encode(),
    "repo-1.0/src/util.py": UTIL_PY.encode(),
    "repo-1.0/secret.env": b"API_KEY=hunter2\n",
    "repo-1.0/logs/debug.log": b"DEBUG something\n",
    "repo-1.0/node_modules/left-pad/index.js": b"module.exports = (s) => s;\n",
    "repo-1.0/assets/logo.bin": b"\x89BIN\x00\x01\x02\x03" * 16,
    "repo-1.0/static/app.min.js": b"var a=1;" * 50,
    "repo-1.0/static/bundle.js": b"var b=2;" * 600,
    "repo-1.0/package-lock.json": b'{"lockfileVersion": 3}\n',
}


def make_tar(files: dict[str, bytes], mode: str = "w", *, dirs: tuple[str, ...] = (),
             extra: tuple[tarfile.TarInfo, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            tf.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            tf.addfile(info, io.BytesIO(data))
        for info in extra:
            tf.addfile(info)
    return buf.getvalue()


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize(("filename", "mode", "media_type"), [
    ("repo-1.0.tar", "w", "application/x-tar"),
    ("repo-1.0.tar.gz", "w:gz", "application/gzip"),
    ("repo-1.0.tgz", "w:gz", "application/gzip"),
    ("repo-1.0.tar.bz2", "w:bz2", "application/x-bzip2"),
    ("repo-1.0.tar.xz", "w:xz", "application/x-xz"),
])
def test_tarball_reads_like_the_zip_of_the_same_files(client, filename, mode, media_type):
    doc = created(client, filename, make_tar(FILES, mode, dirs=("repo-1.0", "repo-1.0/src")))
    assert doc["kind"] == "archive" and doc["parser"] == "tarfile" and doc["media_type"] == media_type
    zipped = created(client, "repo-main.zip", codebase_zip()) if mode == "w" else None
    skipped = {s["path"]: s["reason"] for s in doc["skipped"]}
    assert skipped == {
        "secret.env": "excluded by .gitignore", "logs/debug.log": "excluded by .gitignore",
        "node_modules/left-pad/index.js": "vendored or generated folder", "assets/logo.bin": "binary",
        "static/app.min.js": "minified", "static/bundle.js": "minified", "package-lock.json": "lockfile",
    }
    sections = all_sections(client, doc["id"])
    by_path: dict[str, list[dict]] = {}
    for sec in sections:
        by_path.setdefault(sec["path"], []).append(sec)
    assert set(by_path) == {".gitignore", "README.md", "src/app.py", "src/util.py"}
    for path, text in {"src/app.py": APP_PY, "src/util.py": UTIL_PY, "README.md": README}.items():
        assert_lines_match(text, by_path[path])
    if zipped is not None:  # the same sections as the zip of the same files, to the line
        as_zip = [(s["path"], s["line_start"], s["line_end"], s["text"]) for s in all_sections(client, zipped["id"])]
        assert sorted(as_zip) == sorted((s["path"], s["line_start"], s["line_end"], s["text"]) for s in sections)


def test_tar_made_with_dot_prefixes_and_without_a_common_folder(client):
    data = make_tar({"./a.py": b"print('a')\n", "./docs/b.md": b"# B\n\nbee\n"}, dirs=(".",))
    doc = created(client, "flat.tar", data)
    assert {s["path"] for s in all_sections(client, doc["id"])} == {"a.py", "docs/b.md"}


@pytest.mark.parametrize(("data", "phrases"), [
    (make_tar({"repo/../../evil.py": b"x\n"}), ["is unsafe", "'repo/../../evil.py' points outside the archive"]),
    (make_tar({"/etc/passwd": b"root\n"}), ["is unsafe", "'/etc/passwd' points outside the archive"]),
    (make_tar({"repo/a.py": b"x\n"}, extra=(special("repo/passwd", tarfile.SYMTYPE, "/etc/passwd"),)),
     ["is unsafe", "'repo/passwd' is a link"]),
    (make_tar({"repo/a.py": b"x\n"}, extra=(special("repo/b.py", tarfile.LNKTYPE, "repo/a.py"),)),
     ["is unsafe", "'repo/b.py' is a link"]),
    (make_tar({"repo/a.py": b"x\n"}, extra=(special("repo/null", tarfile.CHRTYPE),)),
     ["is unsafe", "'repo/null' is a device file"]),
    (make_tar({"repo/a.py": b"x\n"}, extra=(special("repo/fifo", tarfile.FIFOTYPE),)),
     ["is unsafe", "'repo/fifo' is a device file or another special file"]),
    (make_tar({"repo/a.py": b"x\n", "repo/./a.py": b"y\n"}), ["more than one entry named"]),
], ids=["traversal", "absolute", "symlink", "hardlink", "device", "fifo", "duplicate"])
def test_hostile_tar(client, settings, data, phrases):
    assert_refused(client, settings, "hostile.tar", data, 422, "hostile.tar", *phrases)


def test_tar_gz_bomb_is_refused_before_it_is_decompressed(client, settings):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("repo/zeros.txt")
        info.size = 150 * 1024 * 1024
        tf.addfile(info, _Zeros(info.size))
    data = buf.getvalue()
    assert len(data) < 200_000
    started = time.monotonic()
    assert_refused(client, settings, "bomb.tar.gz", data, 422, "bomb.tar.gz looks like an archive bomb", "times")
    assert time.monotonic() - started < 30  # refused from the header, not after inflating 150 MB


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.left = n

    def readinto(self, b) -> int:  # type: ignore[override]
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n

    def readable(self) -> bool:
        return True


def test_tar_limits_on_entries_total_size_and_file_size(tmp_path):
    with app_client(tmp_path, max_archive_entries=5, max_archive_bytes=50_000, max_archive_file_bytes=1000) as (c, s):
        many = make_tar({f"repo/f{i}.py": b"x = 1\n" for i in range(6)})
        assert_refused(c, s, "many.tar", many, 422, "many.tar has more than 5 entries", "at most 5")
        big = make_tar({"repo/a.py": b"a = 1\n" * 5000, "repo/b.py": b"b = 1\n" * 5000})
        assert_refused(c, s, "big.tar", big, 422, "big.tar would unpack to more than 50,000 bytes")
        doc = created(c, "mixed.tar", make_tar({"repo/a.py": b"a = 1\n", "repo/big.py": b"b = 1\n" * 300}))
        assert doc["skipped"] == [{"path": "big.py", "reason": "larger than 1,000 bytes"}]


def test_damaged_and_mislabelled_tarballs(client, settings):
    data = make_tar(FILES, "w:gz")
    assert_refused(client, settings, "cut.tar.gz", data[: len(data) // 2], 422, "cut.tar.gz is a damaged tar archive")
    assert_refused(client, settings, "repo.zip", make_tar(FILES), 415, "named like a zip archive",
                   "its content is a tar archive")
    import gzip

    assert_refused(client, settings, "notes.tar.gz", gzip.compress(b"just text\n"), 415, "notes.tar.gz looks like")


def test_tar_bombs_and_traversal_in_process_raise_only_typed_errors():
    limits = ParseLimits(max_archive_entries=10)
    with pytest.raises(InvalidDocument, match="more than 10 entries"):
        parse_upload(make_tar({f"r/{i}.py": b"x\n" for i in range(11)}, "w:xz"), "r.tar.xz", limits)
    with pytest.raises(InvalidDocument, match="points outside"):
        parse_upload(make_tar({"../x.py": b"x\n"}, "w:bz2"), "r.tar.bz2", limits)
