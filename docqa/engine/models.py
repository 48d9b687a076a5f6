"""Which models docqa can answer with, described from their GGUF headers.

The embedded default (SmolLM2-135M-Instruct, fetched by `docqa fetch-model`) needs no
configuration; `DOCQA_MODEL` replaces it with any GGUF by path and `DOCQA_MODELS` adds named ones.
A model that is missing or not a GGUF is still listed, with its error, so `/api/models` and the
start-up log say what is wrong instead of the service failing.

The file is also watched while the service runs: models are loaded lazily (the first question
creates the context), so a GGUF deleted, truncated or swapped after start must not reach
llama.cpp (a missing file makes it fail obscurely; a file truncated under a memory map can kill
the process with SIGBUS). `ModelSpec.problem()` compares the file's size and identity with what
was read at start — a `stat()` per call, the header re-hashed only when the inode or mtime
changed — and every use of the model (`require()`, `vocab()`, the runtime before it creates a
context) refuses with a 503 sentence while the file is not what was described.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from docqa.engine.budget import CACHE_TYPES, ModelShape
from docqa.engine.gguf_meta import GGUFInfo, ModelFileError, read_gguf
from docqa.errors import DocqaError, NotFound
from docqa.fetch import SMOLLM2, embedded_model_path
from docqa.settings import Settings

if TYPE_CHECKING:
    from docqa.engine.backend import Backend

log = logging.getLogger(__name__)

# Sampling presets (Qwen's recommendations for the 2507 models); other models get the Instruct one.
PRESETS: dict[str, dict[str, float]] = {
    "instruct": {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.0, "presence_penalty": 0.0},
    "thinking": {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0, "presence_penalty": 0.0},
}


class ModelUnavailable(DocqaError):
    status_code = 503
    code = "model_unavailable"


class Spec(Protocol):
    """What names and describes a model, whatever runs it; `open()` makes the backend that runs it."""

    name: str

    @property
    def identity(self) -> str: ...  # the tokenizer's identity: token counts and reading rates are kept by it

    @property
    def path(self) -> Path: ...  # a local model's file; a remote one's name (never a server's address)

    @property
    def family(self) -> str: ...  # thinking | hybrid | instruct

    @property
    def vendor(self) -> str: ...  # qwen | default: whose sampling defaults apply (sampling.py)

    @property
    def preset(self) -> dict[str, float]: ...

    def problem(self) -> str | None: ...

    def require(self) -> Spec: ...

    def describe(self) -> dict[str, Any]: ...

    def open(self, settings: Settings) -> Backend: ...


@dataclass
class ModelSpec:
    name: str
    path: Path
    info: GGUFInfo | None = None
    shape: ModelShape | None = None
    identity: str = ""
    error: str | None = None
    _vocab: Any = field(default=None, repr=False)
    _vocab_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # (size, inode, device, mtime_ns) of the file when its header was read; None: not watched
    _stat: tuple[int, int, int, int] | None = field(default=None, repr=False)

    @property
    def family(self) -> str:
        """'thinking' (always reasons), 'hybrid' (/think, /no_think) or 'instruct'."""
        name = (self.info.get("general.name", "") if self.info else "") + " " + self.path.name
        template = (self.info.chat_template or "") if self.info else ""
        if "thinking" in name.lower():
            return "thinking"
        if "<think>" in template and "enable_thinking" in template:
            return "hybrid"
        return "instruct"

    @property
    def preset(self) -> dict[str, float]:
        return PRESETS["thinking" if self.family == "thinking" else "instruct"]

    @property
    def vendor(self) -> str:
        arch = self.shape.architecture if self.shape else ""
        name = (self.info.get("general.name", "") if self.info else "") + " " + self.path.name
        return "qwen" if arch.startswith("qwen") or "qwen" in name.lower() else "default"

    def open(self, settings: Settings) -> Backend:
        from docqa.engine.local import LocalBackend

        return LocalBackend(self, settings)

    def watch(self) -> None:
        """Remember the file's size and identity as they are now (after its header was read)."""
        st = os.stat(self.path)
        self._stat = (st.st_size, st.st_ino, st.st_dev, st.st_mtime_ns)

    def file_problem(self) -> str | None:
        """Why the model file is no longer the one described at start, or None while it is."""
        if self._stat is None or self.info is None:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return (f"its file {self.path} was removed after docqa started; put it back, "
                    "or point DOCQA_MODEL at another GGUF and restart docqa.")
        except OSError as exc:
            return f"its file {self.path} cannot be read ({exc.strerror or exc})."
        size, ino, dev, mtime = self._stat
        if st.st_size != size:
            return (f"its file {self.path} is now {st.st_size:,} bytes instead of {size:,}: it was truncated or "
                    "replaced after docqa started; restore it, or restart docqa to read the new file.")
        if (st.st_ino, st.st_dev, st.st_mtime_ns) != (ino, dev, mtime):
            try:
                with self.path.open("rb") as fh:
                    header = fh.read(self.info.header_bytes)
            except OSError as exc:
                return f"its file {self.path} cannot be read ({exc.strerror or exc})."
            if _identity(header, self.info.size_bytes) != self.identity:
                return (f"its file {self.path} was replaced by a different model after docqa started; "
                        "restart docqa to use it.")
            self._stat = (st.st_size, st.st_ino, st.st_dev, st.st_mtime_ns)  # touched or copied back: the same
        return None

    def problem(self) -> str | None:
        """The reason this model cannot be used now (a load error or a changed file), or None."""
        return self.error or self.file_problem()

    def require(self) -> ModelSpec:
        problem = self.problem()
        if problem or self.info is None or self.shape is None:
            raise ModelUnavailable(f"The model {self.name!r} cannot be used: {problem}")
        return self

    def vocab(self) -> Any:
        """A vocabulary-only llama.cpp model: exact token counts without weights or a context."""
        from llama_cpp import Llama

        with self._vocab_lock:
            if self._vocab is None:
                self.require()
                try:
                    self._vocab = Llama(str(self.path), vocab_only=True, verbose=False)
                except ValueError as exc:  # llama.cpp could not read it after all; the reason is in its log
                    raise ModelUnavailable(
                        f"The model {self.name!r} cannot be used: llama.cpp could not read {self.path.name} ({exc})."
                    ) from exc
            return self._vocab

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "path": str(self.path), "error": self.problem(), "backend": "local"}
        if self.shape and self.info:
            out.update(
                architecture=self.shape.architecture,
                n_ctx_train=self.shape.n_ctx_train,
                n_layer=self.shape.n_layer,
                n_head_kv=self.shape.n_head_kv,
                head_dim=self.shape.key_length,
                n_vocab=self.shape.n_vocab,
                size_bytes=self.shape.weights_bytes,
                family=self.family,
                kv_bytes_per_token={ct: self.shape.kv_bytes_per_token(ct, ct) for ct in CACHE_TYPES},
                sampling=self.preset,
                parameters=self.info.n_params or None,
                size_label=self.info.get("general.size_label"),
                quantization=self.info.quantization,
                display_name=self.info.get("general.name"),
            )
        return out


def load_spec(name: str, path: Path, info: GGUFInfo | None = None) -> ModelSpec:
    """The model at `path` described from its header (`info`: already read, e.g. by discovery)."""
    spec = ModelSpec(name=name, path=path)
    try:
        spec.info = info or read_gguf(path)
        spec.shape = ModelShape.from_gguf(spec.info)
        with path.open("rb") as fh:
            header = fh.read(spec.info.header_bytes)
        spec.identity = _identity(header, spec.info.size_bytes)
        spec.watch()
    except ModelFileError as exc:
        spec.error = exc.detail
    except OSError as exc:
        spec.error = f"The model file {path} cannot be read ({exc.strerror or exc})."
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        spec.error = f"{path.name} lacks the metadata docqa needs ({exc})."
    return spec


def _identity(header: bytes, size_bytes: int) -> str:
    return hashlib.sha256(header + str(size_bytes).encode()).hexdigest()


class ModelRegistry:
    """The models by name: the default (embedded or DOCQA_MODEL), then DOCQA_MODELS's NAME=PATH
    (a GGUF) or NAME=URL (a server; a name given several URLs is one model on several servers)."""

    def __init__(self, settings: Settings) -> None:
        from docqa.engine.dialects import DIALECTS
        from docqa.engine.remote import RemoteSpec, api_keys, is_url

        self.default_name = "default"
        entries: list[tuple[str, Path]] = [
            (self.default_name,
             Path(settings.model).expanduser() if settings.model else embedded_model_path(settings.models_dir))
        ]
        remote: dict[str, list[str]] = {}
        for pair in filter(None, (p.strip() for p in (settings.models or "").split(","))):
            name, _, where = pair.partition("=")
            if is_url(where.strip()):
                remote.setdefault(name.strip(), []).append(where.strip().rstrip("/"))
            else:
                entries.append((name.strip(), Path(where.strip()).expanduser()))
        self.specs: dict[str, Spec] = {}
        for name, path in entries:
            spec = load_spec(name, path)
            if spec.error and name == self.default_name and not settings.model:
                spec.error = f"the embedded model is not fetched yet; run `docqa fetch-model` ({SMOLLM2.filename})"
            if spec.error:
                log.error("model %s: %s", name, spec.error)
            self.specs[name] = spec
        keys = api_keys(settings)
        for name, urls in remote.items():
            self.specs[name] = RemoteSpec(name, urls, settings, keys, dialects=DIALECTS)
        # -- models found on disk (docqa's pulled ones, DOCQA_MODEL_DIRS, Ollama, LM Studio, the Hugging Face and
        # llama.cpp caches): engine/discovery.py adds them by name after the configured ones; `skipped` keeps the
        # files found that are not usable models, with why (`docqa models` shows them).
        from docqa.engine.discovery import Found, add_found

        self.skipped: list[Found] = []
        add_found(self, settings)

    def get(self, name: str | None) -> Spec:
        spec = self.specs.get(name or self.default_name)
        if spec is None:
            raise NotFound(f"There is no model named {name!r}; see GET /api/models.")
        return spec.require()

    def list(self) -> list[Spec]:
        return list(self.specs.values())
