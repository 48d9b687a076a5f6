"""Content-addressed store for original uploads: blobs/ab/abcdef… named by sha256.

Write order: temp file → fsync → rename → fsync the folder; only then is the database row written.
A crash between the rename and the row leaves an orphan blob, which `sweep()` removes at start.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from docqa.errors import StorageFull


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put(self, sha256: str, data: bytes) -> Path:
        target = self.path(sha256)
        if target.is_file():
            return target
        tmp: str | None = None
        try:
            # Creating the folder or the empty temp file fails too on a full disk (no blocks or inodes left).
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
            tmp = str(target)  # from here on a failure (the folder's fsync) leaves no half-stored file either
            _fsync_dir(target.parent)
        except OSError as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull(
                    f"The server's disk is full: the upload ({len(data):,} bytes) was not stored. "
                    "Try again later or ask the operator to free space.", size_bytes=len(data),
                ) from exc
            raise
        return target

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def remove(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def all_hashes(self) -> Iterable[str]:
        if not self.root.is_dir():
            return []
        return [p.name for p in self.root.glob("??/*") if p.is_file() and not p.name.startswith(".")]

    def sweep(self, referenced: set[str]) -> list[str]:
        """Delete temp files and blobs no row refers to; return what was removed."""
        removed: list[str] = []
        if not self.root.is_dir():
            return removed
        for tmp in self.root.glob("??/.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp.name)
        for sha in self.all_hashes():
            if sha not in referenced:
                self.remove(sha)
                removed.append(sha)
        return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
