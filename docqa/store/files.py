"""Content-addressed store for original uploads: blobs/ab/abcdef… named by sha256.

Write order: temp file → fsync → rename → fsync the folder; only then is the database row written.
A crash between the rename and the row leaves an orphan blob, which the sweep at start removes.
Temp files are named `.<sha256>.<random>.tmp`, so the sweep knows whose lock guards them (the folder
may be shared by several instances: see DocumentService.sweep_orphans).
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
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{sha256}.", suffix=".tmp")
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

    def orphans(self, referenced: set[str]) -> dict[str, list[Path]]:
        """Temp files and blobs no row refers to, by the hash they belong to ("" for a temp file whose name
        does not say)."""
        found: dict[str, list[Path]] = {}
        if not self.root.is_dir():
            return found
        for tmp in self.root.glob("??/.*.tmp"):
            sha = tmp.name[1:].split(".", 1)[0]
            found.setdefault(sha if len(sha) == 64 else "", []).append(tmp)
        for sha in self.all_hashes():
            if sha not in referenced:
                found.setdefault(sha, []).append(self.path(sha))
        return found

    @staticmethod
    def remove_paths(paths: Iterable[Path]) -> list[str]:
        removed = []
        for p in paths:
            p.unlink(missing_ok=True)
            removed.append(p.name)
        return removed

    def sweep(self, referenced: set[str]) -> list[str]:
        """Delete temp files and blobs no row refers to; return what was removed. One process only: with a
        shared folder use DocumentService.sweep_orphans, which takes each hash's lock first."""
        removed: list[str] = []
        for paths in self.orphans(referenced).values():
            removed.extend(self.remove_paths(paths))
        return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
