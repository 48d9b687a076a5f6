"""Snapshots of evaluated document prefixes on disk, so a restart (or another session over the
same documents) starts warm instead of re-reading.

A snapshot is written with `llama_state_seq_save_file`, which streams the KV cells of sequence 0
to a file (no 3× copy in RAM as `Llama.save_state()` makes). Its key covers everything that makes
a state valid: the model's identity (sha256 of its GGUF header + size), the llama-cpp-python
version, the context layout (n_ctx, K/V cache types, flash attention, YaRN) and the hash of the
prefix tokens. Each snapshot has a JSON sidecar holding its sha256 and token count; a file that
does not match its sidecar is deleted, never loaded. A file that matches but that llama.cpp still
cannot read is deleted too, and leaves sequence 0 empty (see `load`). The folder is capped in bytes; the least
recently used snapshots go first (use touches the file's mtime).

The folder may be deleted, replaced or filled under a running server: a save then logs a warning
and the answer goes on; a load finds nothing and the prefix is re-read. Leftovers of a crash
mid-save (temp files, half pairs) are swept at start (`sweep`).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import struct
import time
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import llama_cpp

from docqa.fetch import file_sha256

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContextConfig:
    """Everything a llama.cpp context is created with that changes its KV contents."""

    n_ctx: int
    type_k: str
    type_v: str
    flash_attn: bool
    yarn_factor: float | None
    n_ctx_train: int
    n_batch: int
    n_ubatch: int


def tokens_hash(tokens: list[int]) -> str:
    return hashlib.sha256(array("i", tokens).tobytes()).hexdigest()


def state_key(model_identity: str, config: ContextConfig, prefix_tokens: list[int]) -> str:
    material = {
        "model": model_identity,
        "llama_cpp_python": llama_cpp.__version__,
        "config": asdict(config),
        "prefix": tokens_hash(prefix_tokens),
        "n_prefix": len(prefix_tokens),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


GET_DATA_HEADER = 8
WRITE_CHUNK = 8 * 1024**2  # bytes written (and hashed) between two calls of a write's `pace`


class SnapshotAbandoned(Exception):
    """Raised by a write's `pace` to give the write up (docqa is stopping and its wait ran out)."""


def copy_state(ctx: Any) -> Any:
    """Sequence 0's KV state copied into memory (`llama_state_seq_get_data`): a memory copy, far quicker
    than writing it to disk, so the file is written afterwards on another thread (`StateCache.write`)."""
    size = llama_cpp.llama_state_seq_get_size(ctx, 0)
    buf = (ctypes.c_uint8 * size)()
    n = llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0)
    if n != size:
        raise OSError(f"llama.cpp copied {n} of {size} bytes of the sequence state")
    return buf


def restore_state(ctx: Any, state: Any) -> bool:
    """Put a state copied by `copy_state` back into sequence 0 (True when llama.cpp took it)."""
    n = llama_cpp.llama_state_seq_set_data(ctx, state, len(state), 0)
    if not n:
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), 0, -1, -1)
    return bool(n)


class StateCache:
    def __init__(self, root: Path, cap_bytes: int) -> None:
        self.root = root
        self.cap_bytes = cap_bytes

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.kv", self.root / f"{key}.json"

    def save(self, ctx: Any, key: str, tokens: list[int]) -> bool:
        """Write the KV state of sequence 0 (holding `tokens`) under `key`. Never fails the answer:
        a full, read-only or vanished folder (deleted or replaced while the server runs) is logged."""
        arr = (llama_cpp.llama_token * len(tokens))(*tokens)

        def fill(tmp: Path) -> str | None:
            if not llama_cpp.llama_state_seq_save_file(ctx, str(tmp).encode(), 0, arr, len(tokens)):
                return None
            return file_sha256(tmp)

        if not self._store(key, tokens, fill):
            return False
        self.evict()
        return True

    def write(self, key: str, tokens: list[int], state: Any, *, evict_before: float | None = None,
              pace: Callable[[], None] | None = None) -> bool:
        """Write a sequence state copied to memory (`copy_state`) under `key`, in exactly the layout
        `llama_state_seq_save_file` writes (so `load` reads it back with llama.cpp's own loader). Runs
        on the runner's writer thread, off the path of every question. `evict_before`: make room only
        by evicting snapshots last used before that time (read-ahead never pushes out a snapshot used
        since it was asked for); when that is not enough room, this snapshot is not kept. `pace` is called
        before each chunk of WRITE_CHUNK bytes: it may wait (a question runs) or raise SnapshotAbandoned
        (nothing is kept, no temp file is left)."""
        header = struct.pack("<III", llama_cpp.LLAMA_STATE_SEQ_MAGIC, llama_cpp.LLAMA_STATE_SEQ_VERSION, len(tokens))
        body = array("i", tokens).tobytes()
        # llama_state_seq_get_data puts its own 8-byte header (an io magic and the sequence id) before
        # the stream that llama_state_seq_save_file writes after the tokens (tests/test_readahead.py
        # checks the two files are byte for byte the same)
        view = memoryview(state).cast("B")[GET_DATA_HEADER:]

        def fill(tmp: Path) -> str:
            digest = hashlib.sha256()
            with tmp.open("wb") as out:
                for part in (header, body, view):
                    for start in range(0, len(part), WRITE_CHUNK):
                        if pace is not None:
                            pace()
                        chunk = part[start : start + WRITE_CHUNK]
                        out.write(chunk)
                        digest.update(chunk)
            return digest.hexdigest()

        if not self._store(key, tokens, fill):
            return False
        if evict_before is None:
            self.evict()
            return True
        return self.evict(before=evict_before, keep=key)

    def _store(self, key: str, tokens: list[int], fill: Callable[[Path], str | None]) -> bool:
        """Write a snapshot under `key` through temp files: `fill` writes the data file and returns its
        sha256 (None: nothing written), then the sidecar follows; each is renamed into place. Never
        fails the answer: a full, read-only or vanished folder is logged and leaves no temp file."""
        if self.cap_bytes <= 0:
            return False
        data, meta = self._paths(key)
        # unique per writer: two instances on one shared folder may save the same key at once
        unique = f"{os.getpid()}-{os.urandom(4).hex()}"
        tmp = self.root / f"{key}.{unique}.kv.tmp"
        meta_tmp = self.root / f"{key}.{unique}.json.tmp"
        try:
            self.root.mkdir(parents=True, exist_ok=True)  # again: the folder may have been deleted meanwhile
            digest = fill(tmp)
            if digest is None:
                tmp.unlink(missing_ok=True)
                return False
            os.replace(tmp, data)
            sidecar = {"sha256": digest, "size": data.stat().st_size, "n_tokens": len(tokens),
                       "tokens_hash": tokens_hash(tokens)}
            meta_tmp.write_text(json.dumps(sidecar))
            os.replace(meta_tmp, meta)
        except (OSError, SnapshotAbandoned) as exc:  # a full or read-only disk must not fail the answer
            for leftover in (tmp, meta_tmp):
                with contextlib.suppress(OSError):
                    leftover.unlink(missing_ok=True)
            if isinstance(exc, SnapshotAbandoned):
                raise
            log.warning("could not save KV snapshot %s: %s", key[:12], exc)
            return False
        return True

    def n_tokens(self, key: str) -> int | None:
        """The token count a snapshot's sidecar names (None when there is none)."""
        try:
            sidecar = json.loads(self._paths(key)[1].read_text())
            return int(sidecar["n_tokens"]) if isinstance(sidecar, dict) else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def has(self, key: str) -> bool:
        data, meta = self._paths(key)
        return data.is_file() and meta.is_file()

    def load(self, ctx: Any, key: str, tokens: list[int]) -> bool:
        """Restore the state saved under `key` into sequence 0; False (and the files removed) when
        it is missing, damaged, or not for exactly these tokens."""
        data, meta = self._paths(key)
        if not data.is_file() or not meta.is_file():
            return False
        try:
            sidecar = json.loads(meta.read_text())
            ok = isinstance(sidecar, dict) and (
                sidecar.get("n_tokens") == len(tokens)
                and sidecar.get("tokens_hash") == tokens_hash(tokens)
                and sidecar.get("size") == data.stat().st_size
                and sidecar.get("sha256") == file_sha256(data)
            )
        except (OSError, ValueError):
            ok = False
        if not ok:
            log.warning("discarding damaged KV snapshot %s", key[:12])
            self.discard(key)
            return False
        out = (llama_cpp.llama_token * len(tokens))()
        count = ctypes.c_size_t(0)
        read = llama_cpp.llama_state_seq_load_file(ctx, str(data).encode(), 0, out, len(tokens), ctypes.byref(count))
        if not read or count.value != len(tokens) or list(out) != tokens:
            log.warning("KV snapshot %s did not load; it will be rebuilt", key[:12])
            # llama.cpp empties the sequence when a read fails midway (or it now holds the wrong
            # cells): leave it empty for certain, so the caller re-reads from position 0.
            llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), 0, -1, -1)
            self.discard(key)
            return False
        with contextlib.suppress(OSError):  # deleted right after loading: the state is in memory anyway
            os.utime(data)
        return True

    def discard(self, key: str) -> None:
        for p in self._paths(key):
            with contextlib.suppress(OSError):
                p.unlink(missing_ok=True)

    def entries(self) -> list[Path]:
        try:
            return list(self.root.glob("*.kv")) if self.root.is_dir() else []
        except OSError:
            return []

    def _sizes(self) -> list[tuple[float, int, Path]]:
        """(mtime, size, path) of every snapshot still there (files may vanish while we look)."""
        out = []
        for p in self.entries():
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((st.st_mtime, st.st_size, p))
        return out

    def writing(self) -> int:
        """Snapshots copied from a context and being written now (runner.SnapshotWriter's markers)."""
        return self.pending_writes()["pending"]

    def pending_writes(self) -> dict[str, Any]:
        """The snapshots copied from a context and not yet on disk (runner.SnapshotWriter's markers, each
        naming its tokens and bytes): how many, their tokens and bytes, and the age of the oldest (s)."""
        out: dict[str, Any] = {"pending": 0, "tokens": 0, "bytes": 0, "oldest_s": None}
        try:
            markers = list(self.root.glob("*.pending")) if self.root.is_dir() else []
        except OSError:
            return out
        now = time.time()
        for marker in markers:
            try:
                info = json.loads(marker.read_text() or "{}")
                age = now - marker.stat().st_mtime
            except (OSError, ValueError):
                continue  # written just now, or gone meanwhile
            out["pending"] += 1
            if isinstance(info, dict):
                out["tokens"] += int(info.get("tokens", 0))
                out["bytes"] += int(info.get("bytes", 0))
            out["oldest_s"] = round(max(age, out["oldest_s"] or 0.0), 1)
        return out

    def total_bytes(self) -> int:
        return sum(size for _, size, _ in self._sizes())

    def evict(self, before: float | None = None, keep: str | None = None) -> bool:
        """Remove the least recently used snapshots until the folder fits its cap. With `before`, only
        those last used before that time may go; if that is not enough, `keep` itself is removed (and
        False returned): a read-ahead never evicts a snapshot used since it was asked for."""
        files = sorted(self._sizes(), key=lambda e: e[0])
        total = sum(size for _, size, _ in files)
        while files and total > self.cap_bytes:
            mtime, size, victim = files[0]
            if before is not None and (mtime >= before or victim.stem == keep):
                break
            files.pop(0)
            total -= size
            self.discard(victim.stem)
        if total > self.cap_bytes and keep is not None:
            self.discard(keep)
            return False
        return True

    def sweep(self, min_age_s: float = 60.0) -> list[str]:
        """At start: remove what a crash mid-save leaves (temp files, a snapshot without its sidecar
        or a sidecar without its snapshot), when older than `min_age_s` (another process on the
        same folder may be writing it now). Returns the names removed."""
        removed: list[str] = []
        if not self.root.is_dir():
            return removed
        now = time.time()
        try:
            names = {p.name for p in self.root.iterdir()}
        except OSError:
            return removed
        for name in sorted(names):
            stem, _, ext = name.partition(".")
            orphan = (name.endswith((".tmp", ".pending"))
                      or (ext == "kv" and f"{stem}.json" not in names)
                      or (ext == "json" and f"{stem}.kv" not in names))
            path = self.root / name
            try:
                if orphan and now - path.stat().st_mtime >= min_age_s:
                    path.unlink()
                    removed.append(name)
            except OSError:
                continue
        if removed:
            log.info("removed %d leftover KV snapshot file(s)", len(removed))
        return removed
