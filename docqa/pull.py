"""Pull a model by name from the Hugging Face Hub, only when a person asks: `docqa pull hf:ORG/REPO:QUANT`.

A reference names a repository and a quantization, as llama-server's `-hf` does
(`hf:Qwen/Qwen3-4B-Instruct-2507-GGUF:Q4_K_M`; without one, Q4_K_M if the repository has it, else its
first GGUF), or an exact file (`hf:org/repo/path/file.gguf`). A split model's parts come together.

huggingface_hub does the talking (the hub's API, HF_TOKEN, redirects to the CDN, retries) and
`http_get` the transfer: when the connection is cut mid-body it asks again with a `Range` from
where it stopped. docqa owns the file: it downloads into `<models_dir>/.partial/…/<file>.part`
(kept across attempts, so a pull cut short — a dropped connection past the library's retries,
a stopped process — resumes from its last byte the next time), checks the whole file's sha256
against the hub's metadata (the LFS sha256 from the repository's file list, else the ETag), and
only then moves it to `<models_dir>/hf/<org>/<repo>/<file>`, where discovery.py offers it as
`hf:org/repo:QUANT`. `hf_hub_download` is not used: since huggingface_hub 1.x it downloads to a
process-unique temporary file deleted on failure, so a pull stopped half-way would start over.

HF_ENDPOINT (a mirror, or a test's loopback server), HF_TOKEN and HF_HUB_OFFLINE are read at each
pull, from the environment passed in (the CLI and the app pass os.environ).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import urlparse

from docqa.errors import (
    ChecksumMismatch,
    Conflict,
    DocqaError,
    NotFound,
    PullCancelled,
    StorageFull,
    short_id,
)
from docqa.hub import (  # noqa: F401 - re-exported: where callers found them first
    DEFAULT_ENDPOINT,
    DEFAULT_QUANT,
    REPO,
    SHA256,
    SPLIT,
    Hub,
    Ref,
    RemoteFile,
    Resolved,
    hub_errors,
    resolve,
    resolve_all,
)

# -- the transfer ---------------------------------------------------------------------------------------


@dataclass
class Progress:
    """Bytes so far over all the files of one pull; rate and time left over this attempt's bytes."""

    total: int = 0
    done: int = 0
    resumed: int = 0  # bytes already on disk from an earlier attempt
    started: float = field(default_factory=time.monotonic)
    stop: threading.Event = field(default_factory=threading.Event, repr=False)  # set: cancel at the next chunk
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
        if self.stop.is_set():
            raise PullCancelled("The pull was cancelled; what arrived is kept, and pulling the same model again "
                                "resumes from it.")

    @property
    def rate(self) -> float | None:
        elapsed = time.monotonic() - self.started
        fresh = self.done - self.resumed
        return fresh / elapsed if elapsed > 0.5 and fresh > 0 else None

    @property
    def eta_s(self) -> float | None:
        rate = self.rate
        return round((self.total - self.done) / rate, 1) if rate else None




def _bar_class(progress: Progress, show: bool) -> type:
    """A tqdm class for huggingface_hub's http_get: it draws the bar (bytes, rate, time left) on stderr when
    `show`, and always counts the bytes into `progress` (what the API's pull status reports)."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class Bar(hf_tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if not show:
                kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            progress.add(int(n or 0))
            return super().update(n)  # type: ignore[no-any-return]

    return Bar


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def target_dir(models_dir: Path, repo: str) -> Path:
    return models_dir / "hf" / repo


def download(resolved: Resolved, hub: Hub, models_dir: Path, progress: Progress | None = None,
             show_progress: bool = False) -> list[Path]:
    """Fetch the resolved files into the models folder, resuming, verifying each; return their paths."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    progress = progress or Progress()
    repo = resolved.ref.repo
    final_dir = target_dir(models_dir, repo)
    partial_dir = models_dir / ".partial" / "hf" / repo
    progress.total = resolved.total_bytes
    convert = hub_errors(hub, repo)
    todo: list[tuple[RemoteFile, Path, Path]] = []
    for f in resolved.files:
        final = final_dir / f.path
        if final.is_file() and final.stat().st_size == f.size:
            progress.add(f.size)  # pulled before (verified when it landed)
            continue
        todo.append((f, final, partial_dir / (f.path + ".part")))
    for _, _, part in todo:
        if part.is_file():
            progress.resumed += part.stat().st_size
    progress.add(progress.resumed)
    _check_space(models_dir, sum(f.size for f, _, _ in todo) - progress.resumed)
    out = [final_dir / f.path for f in resolved.files]
    for f, final, part in todo:
        part.parent.mkdir(parents=True, exist_ok=True)
        with part.open("ab") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Conflict(f"{f.path} is already being pulled by another docqa process; wait for it.") from None
            have = fh.tell()
            if have > f.size:  # not the file the hub has now: start over
                fh.truncate(0)
                progress.add(-have)
                have = 0
            url = hf_hub_url(repo, f.path, revision=resolved.revision, endpoint=hub.endpoint)
            try:
                meta = get_hf_file_metadata(url, token=hub.token if hub.token else None, endpoint=hub.endpoint)
                expected = f.sha256 or (meta.etag if meta.etag and SHA256.match(meta.etag) else None)
                location = meta.location or url
                same_host = urlparse(location).netloc == urlparse(hub.endpoint).netloc
                headers = build_hf_headers(token=hub.token if same_host and hub.token else (None if same_host
                                                                                           else False))
                writer = _Hashing(fh, part, have)
                http_get(location, cast(BinaryIO, writer), resume_size=have, headers=headers, expected_size=f.size,
                         displayed_filename=f.path.rsplit("/", 1)[-1], tqdm_class=_bar_class(progress, show_progress))
            except Exception as exc:
                raise convert(exc) from exc
            fh.flush()
            os.fsync(fh.fileno())
        _verify(part, f, expected, hub, writer.hexdigest())
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, final)
    return out


class _Hashing:
    """The .part file as http_get writes it, hashed on the way (the file is not read a second time): the bytes
    an earlier attempt left are hashed first. A rewind (a server that ignored the Range) spoils the running
    hash, and the whole file is hashed afterwards instead."""

    def __init__(self, fh: BinaryIO, path: Path, have: int) -> None:
        self.fh = fh
        self.sha = hashlib.sha256()
        self.intact = True
        if have:
            with path.open("rb") as old:
                while have > 0 and (chunk := old.read(min(have, 1 << 20))):
                    self.sha.update(chunk)
                    have -= len(chunk)

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return self.fh.write(data)

    def tell(self) -> int:
        return self.fh.tell()

    def seek(self, *args: Any) -> int:
        self.intact = False
        return self.fh.seek(*args)

    def truncate(self, *args: Any) -> int:
        self.intact = False
        return self.fh.truncate(*args)

    def hexdigest(self) -> str | None:
        return self.sha.hexdigest() if self.intact else None


def _verify(part: Path, f: RemoteFile, expected: str | None, hub: Hub, digest: str | None = None) -> None:
    if expected is None:
        return  # a small non-LFS file: the hub gives a git blob id, not a sha256; its size was checked
    digest = digest or sha256_file(part)
    if digest != expected:
        part.unlink(missing_ok=True)
        raise ChecksumMismatch(
            f"{f.path} arrived with sha256 {digest[:16]}… but {hub.endpoint} says {expected[:16]}…: the download "
            "was corrupted or tampered with, so it was deleted. Pull it again; if this repeats, the mirror "
            "(HF_ENDPOINT) serves a different file than it lists.")


def _check_space(models_dir: Path, need: int) -> None:
    models_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(models_dir).free
    if need > free:
        raise StorageFull(f"Pulling needs {need / 1e9:.1f} GB more but {models_dir} has {free / 1e9:.1f} GB free.")


def fit(resolved: Resolved, hub: Hub, settings: Any) -> dict[str, Any] | None:
    """Whether the model fits this machine, said before it is downloaded: the recommendation's row for its
    quantization (the architecture from the hub's copy of its header, a range request), the first KV type
    that reads the default document length whole, else the smallest. None when the header cannot be read."""
    from dataclasses import replace

    from docqa.engine.budget import probe_memory
    from docqa.engine.recommend import hub_shape, rows_for

    try:
        shape = replace(hub_shape(resolved, hub), weights_bytes=resolved.total_bytes)
    except DocqaError:
        return None
    rows = rows_for(settings, resolved.ref.repo, resolved.quant, shape, probe_memory(settings.memory_budget), None,
                    "hub header", True)
    best = next((r for r in rows if r.fits), rows[-1])
    return best.to_dict()


# -- pulls the API started, in the background --------------------------------------------------------------


@dataclass
class Pull:
    id: str
    ref: Ref
    resolved: Resolved
    progress: Progress
    status: str = "downloading"  # downloading | done | failed | cancelled
    model: str | None = None  # the name it is offered under once done
    error: dict[str, Any] | None = None
    fit: dict[str, Any] | None = None  # the recommendation's row for it (before the download starts)
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        p = self.progress
        return {
            "id": self.id, "ref": str(self.ref), "status": self.status, **self.resolved.to_dict(),
            "bytes_total": p.total, "bytes_done": min(p.done, p.total), "bytes_resumed": p.resumed,
            "rate_bytes_per_s": round(p.rate, 1) if p.rate else None,
            "eta_s": p.eta_s if self.status == "downloading" else None,
            "model": self.model, "error": self.error, "started_at": self.started_at, "finished_at": self.finished_at,
            "fit": self.fit,
        }


class Pulls:
    """Pulls started over the API: resolved before the 202 (an unknown repository or quantization is refused
    at once), downloaded by a thread, then offered by the registry under their name."""

    def __init__(self, settings: Any, on_done: Callable[[Path], str | None],
                 env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.models_dir: Path = settings.models_dir
        self.on_done = on_done
        self.env = env
        self._pulls: dict[str, Pull] = {}
        self._lock = threading.Lock()

    def start(self, text: str) -> Pull:
        ref = Ref.parse(text)
        hub = Hub.from_env(self.env)
        resolved = resolve(ref, hub)
        with self._lock:
            for pull in self._pulls.values():
                if pull.status == "downloading" and pull.resolved.files == resolved.files \
                        and pull.ref.repo == ref.repo:
                    return pull  # the same files are already coming
            pull = Pull(uuid.uuid4().hex[:12], ref, resolved, Progress(total=resolved.total_bytes))
            self._pulls[pull.id] = pull
        threading.Thread(target=self._run, args=(pull, hub), daemon=True, name=f"pull-{pull.id}").start()
        return pull

    def _run(self, pull: Pull, hub: Hub) -> None:
        try:
            pull.fit = fit(pull.resolved, hub, self.settings)
            paths = download(pull.resolved, hub, self.models_dir, pull.progress)
            pull.model = self.on_done(paths[0])
            pull.status = "done"
        except PullCancelled as exc:
            pull.status, pull.error = "cancelled", {"status_code": exc.status_code, "detail": exc.detail}
        except DocqaError as exc:
            pull.status, pull.error = "failed", {"status_code": exc.status_code, "detail": exc.detail}
        except Exception as exc:  # a bug or an OS error: the pull fails with a sentence, the service goes on
            pull.status, pull.error = "failed", {"status_code": 500, "detail": f"The pull failed: {exc}"}
        finally:
            pull.finished_at = time.time()

    def get(self, pull_id: str) -> Pull:
        pull = self._pulls.get(pull_id)
        if pull is None:
            raise NotFound(f"There is no pull {short_id(pull_id)}; POST /api/models/pull starts one.")
        return pull

    def cancel(self, pull_id: str) -> Pull:
        """Stop a pull at its next chunk; its .part file stays, so pulling it again resumes."""
        pull = self.get(pull_id)
        pull.progress.stop.set()
        return pull

    def list(self) -> list[Pull]:
        return sorted(self._pulls.values(), key=lambda p: p.started_at, reverse=True)
