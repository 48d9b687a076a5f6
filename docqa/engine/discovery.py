"""Models people already have on disk, read in place from the folders of the tools that fetched them.

Each tool keeps GGUF files its own way; docqa reads them where they are and never copies, moves or
writes anything in those folders (llama.cpp memory-maps the file, as the tool itself does):

* **Ollama** (`OLLAMA_MODELS`, else `~/.ollama/models`, and the Linux service's
  `/usr/share/ollama/.ollama/models`): a manifest per model under
  `manifests/<registry>/<namespace>/<model>/<tag>` (JSON, a Docker/OCI image manifest) lists layers;
  the one with media type `application/vnd.ollama.image.model` is the GGUF, stored as
  `blobs/sha256-<hex>` (the digest's colon becomes a dash). `registry.ollama.ai/library/qwen3/4b` is
  what `ollama run qwen3:4b` names. Projector and adapter layers are other media types and are not read.
* **LM Studio** (`~/.lmstudio/models`, the older `~/.cache/lm-studio/models`, and a custom
  `downloadsFolder` from `~/.lmstudio/settings.json`): `<publisher>/<repo>/<file>.gguf`.
* **The Hugging Face cache** (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`):
  `models--<org>--<name>/snapshots/<revision>/<path in the repo>`, each a symlink into `blobs/`.
* **llama.cpp's cache** (`LLAMA_CACHE`, else `~/.cache/llama.cpp`): `-hf` downloads, flat files named
  `<org>_<repo>_<file>.gguf` in older builds, the Hugging Face layout in newer ones.
* **docqa's own models folder** (`docqa pull` puts files under `hf/<org>/<repo>/`) and the folders in
  `DOCQA_MODEL_DIRS`.

A split GGUF (`name-00001-of-00003.gguf`) is one model: llama.cpp opens the first part and finds the
others beside it, so all parts must be there. Every file found is read up to the end of its header
(gguf_meta.py): a file that is not a GGUF, is truncated, or is not a language model (a vision
projector, a LoRA adapter, an embedding model) is listed as skipped with the reason, never offered.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol

from docqa.engine.backend import Spec
from docqa.engine.gguf_meta import GGUFInfo, ModelFileError, read_gguf
from docqa.engine.local import ModelSpec, load_spec
from docqa.hub import QUANT_TAG
from docqa.hub import SPLIT_NAME as SPLIT
from docqa.settings import Settings

log = logging.getLogger(__name__)


class Registry(Protocol):
    """What discovery adds to (models.py's ModelRegistry): the models by name, and the files found that are not
    usable models, with why."""

    specs: dict[str, Spec]
    skipped: list[Found]

OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_LIBRARY = ("registry.ollama.ai", "library")
EMBEDDING_ARCHS = {"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "modern-bert", "t5encoder"}
MAX_DEPTH = 6  # how deep a models folder is searched for *.gguf


@dataclass
class Found:
    """A model file found in another tool's folder (or a file there that is not a usable model)."""

    source: str  # Ollama | LM Studio | Hugging Face | llama.cpp | docqa | folder
    label: str  # as that tool names it: "qwen3:4b", "Qwen/Qwen3-4B-GGUF Q4_K_M"
    name: str  # the name docqa offers it under (`--model`, the API's "model")
    path: Path  # the file llama.cpp opens: a split model's first part
    parts: list[Path] = field(default_factory=list)
    size_bytes: int = 0
    skipped: str | None = None  # why it is not offered
    info: GGUFInfo | None = field(default=None, repr=False)  # its header, as read when it was found

    @property
    def where(self) -> str:
        return f"{self.source}: {self.label}"

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "where": self.where, "parts": len(self.parts) or 1}


@dataclass
class FoundSpec(ModelSpec):
    """A local model found on disk: a ModelSpec that also says where it was found."""

    found: Found | None = None

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self.found is not None:
            out.update(self.found.describe())
        return out


@dataclass
class _Candidate:
    source: str
    prefix: str  # of the offered name: "ollama:", "hf:", …
    repo: str | None  # org/repo, publisher/repo; None: the label is fixed (Ollama's name:tag, a folder's file)
    label: str | None
    parts: list[Path]
    missing: str | None = None  # a part or blob that is not there


# -- where each tool keeps its models ---------------------------------------------------------------------


def tool_folders(env: Mapping[str, str] | None = None, home: Path | None = None) -> list[tuple[str, Path]]:
    """(source, folder) for every tool, as the tool itself would resolve it from its environment variables."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home()) if home is None else home
    cache = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else home / ".cache"
    out: list[tuple[str, Path]] = []
    if env.get("OLLAMA_MODELS"):
        out.append(("Ollama", Path(env["OLLAMA_MODELS"]).expanduser()))
    else:
        out += [("Ollama", home / ".ollama" / "models"), ("Ollama", Path("/usr/share/ollama/.ollama/models"))]
    out += [("LM Studio", d) for d in _lmstudio_folders(home)]
    if env.get("HF_HUB_CACHE"):
        hub = Path(env["HF_HUB_CACHE"]).expanduser()
    elif env.get("HF_HOME"):
        hub = Path(env["HF_HOME"]).expanduser() / "hub"
    else:
        hub = cache / "huggingface" / "hub"
    out.append(("Hugging Face", hub))
    out.append(("llama.cpp", Path(env["LLAMA_CACHE"]).expanduser() if env.get("LLAMA_CACHE") else cache / "llama.cpp"))
    return out


def _lmstudio_folders(home: Path) -> list[Path]:
    folders = [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]
    try:  # a models folder moved in LM Studio's settings
        custom = json.loads((home / ".lmstudio" / "settings.json").read_text()).get("downloadsFolder")
        if isinstance(custom, str) and custom:
            folders.insert(0, Path(custom).expanduser())
    except (OSError, ValueError, AttributeError):
        pass
    return folders


# -- reading each layout --------------------------------------------------------------------------------


def _ollama(root: Path) -> Iterator[_Candidate]:
    manifests = root / "manifests"
    if not manifests.is_dir():
        return
    for manifest in sorted(p for p in manifests.glob("*/*/*/*") if p.is_file()):
        host, namespace, model, tag = manifest.relative_to(manifests).parts
        if (host, namespace) == OLLAMA_LIBRARY:
            label = f"{model}:{tag}"
        elif host == OLLAMA_LIBRARY[0]:
            label = f"{namespace}/{model}:{tag}"
        else:
            label = f"{host}/{namespace}/{model}:{tag}"
        try:
            layers = json.loads(manifest.read_text()).get("layers") or []
            digest = next(str(layer["digest"]) for layer in layers if layer.get("mediaType") == OLLAMA_MODEL_LAYER)
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            yield _Candidate("Ollama", "ollama:", None, label, [manifest],
                             "its manifest is not one Ollama wrote (no readable model layer)")
            continue
        except StopIteration:
            yield _Candidate("Ollama", "ollama:", None, label, [manifest],
                             "its manifest has no model layer (application/vnd.ollama.image.model)")
            continue
        blob = root / "blobs" / digest.replace(":", "-")
        missing = None if blob.is_file() else f"its model blob {blob.name} is missing (an interrupted `ollama pull`?)"
        yield _Candidate("Ollama", "ollama:", None, label, [blob], missing)


def _ggufs(folder: Path, depth: int = MAX_DEPTH) -> list[Path]:
    """Every *.gguf under `folder` (symlinks followed, hidden folders skipped), sorted."""
    out: list[Path] = []
    if depth < 0 or not folder.is_dir():
        return out
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return out
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.suffix.lower() == ".gguf" and (entry.is_file() or entry.is_symlink()):
            out.append(entry)
        elif entry.is_dir():
            out += _ggufs(entry, depth - 1)
    return out


def _grouped(files: list[Path]) -> Iterator[tuple[list[Path], str | None]]:
    """One entry per model: a split model's parts together (first part first), with what is missing."""
    splits: dict[tuple[Path, str, int], dict[int, Path]] = {}
    for f in files:
        m = SPLIT.match(f.name)
        if m is None:
            yield [f], None if f.exists() else f"{f.name} points at a file that is not there"
            continue
        splits.setdefault((f.parent, m["stem"], int(m["count"])), {})[int(m["part"])] = f
    for (parent, stem, count), parts in splits.items():
        ordered = [parts[i] for i in sorted(parts)]
        absent = [i for i in range(1, count + 1) if i not in parts or not parts[i].exists()]
        missing = None
        if absent:
            missing = (f"split model {stem}: part{'s' if len(absent) > 1 else ''} "
                       f"{', '.join(map(str, absent))} of {count} {'are' if len(absent) > 1 else 'is'} missing")
        if 1 not in parts:
            ordered.insert(0, parent / f"{stem}-00001-of-{count:05d}.gguf")
        yield ordered, missing


def _hf_cache(root: Path, source: str = "Hugging Face", prefix: str = "hf:") -> Iterator[_Candidate]:
    if not root.is_dir():
        return
    for repo_dir in sorted(root.glob("models--*")):
        repo = repo_dir.name.removeprefix("models--").replace("--", "/")
        seen: set[str] = set()
        for snapshot in _snapshots(repo_dir):
            files = [f for f in _ggufs(snapshot) if f.name not in seen]
            seen.update(f.name for f in files)
            for parts, missing in _grouped(files):
                yield _Candidate(source, prefix, repo, None, parts, missing)


def _snapshots(repo_dir: Path) -> list[Path]:
    """The snapshot refs/main points at first, then the others (newest first)."""
    snapshots = [p for p in (repo_dir / "snapshots").glob("*") if p.is_dir()]
    try:
        main = (repo_dir / "refs" / "main").read_text().strip()
    except OSError:
        main = ""
    return sorted(snapshots, key=lambda p: (p.name != main, -p.stat().st_mtime))


def _lmstudio(root: Path) -> Iterator[_Candidate]:
    for parts, missing in _grouped(_ggufs(root)):
        rel = parts[0].relative_to(root).parts
        repo = "/".join(rel[:2]) if len(rel) >= 3 else None
        yield _Candidate("LM Studio", "lmstudio:", repo, None if repo else parts[0].stem, parts, missing)


def _llamacpp(root: Path) -> Iterator[_Candidate]:
    yield from _hf_cache(root, "llama.cpp", "llama.cpp:")  # newer builds keep the Hugging Face layout
    flat = sorted(root.glob("*.gguf")) if root.is_dir() else []
    for parts, missing in _grouped(flat):
        yield _Candidate("llama.cpp", "llama.cpp:", None, _llamacpp_label(root, parts[0]), parts, missing)


def _llamacpp_label(root: Path, first: Path) -> str:
    """Older builds name a file <org>_<repo>_<file>; their manifest=<org>=<repo>=<tag>.json says which repo."""
    for manifest in root.glob("manifest=*.json"):
        org, _, rest = manifest.stem.removeprefix("manifest=").partition("=")
        repo = rest.rpartition("=")[0] or rest
        if first.name.startswith(f"{org}_{repo}_"):
            return f"{org}/{repo} {first.name.removeprefix(f'{org}_{repo}_')}"
    return first.name


def _folder(root: Path, source: str, prefix: str) -> Iterator[_Candidate]:
    for parts, missing in _grouped(_ggufs(root)):
        yield _Candidate(source, prefix, None, SPLIT.sub(r"\g<stem>", parts[0].name).removesuffix(".gguf"),
                         parts, missing)


def _pulled(models_dir: Path) -> Iterator[_Candidate]:
    """`docqa pull` puts a file under <models_dir>/hf/<org>/<repo>/."""
    root = models_dir / "hf"
    for parts, missing in _grouped(_ggufs(root)):
        rel = parts[0].relative_to(root).parts
        if len(rel) >= 3:
            yield _Candidate("docqa", "hf:", "/".join(rel[:2]), None, parts, missing)


# -- what each file is ---------------------------------------------------------------------------------------


def unusable(info: GGUFInfo) -> str | None:
    """Why a readable GGUF is not a language model docqa can answer with, or None."""
    kind = str(info.get("general.type", "model")).lower()
    arch = info.architecture
    if kind == "mmproj" or arch == "clip":
        return "a vision projector (mmproj) that goes with a language model; it is not one itself"
    if kind == "adapter" or info.get("adapter.type") is not None:
        kind = str(info.get("adapter.type") or "lora")
        return f"a {'LoRA' if kind.lower() == 'lora' else kind} adapter for another model, not a whole model"
    if arch in EMBEDDING_ARCHS or info.arch("pooling_type") not in (None, 0):
        return "an embedding model: it turns text into vectors and cannot write answers"
    if info.arch("block_count") is None:
        return f"its header lacks the layer count docqa needs (architecture {arch!r})"
    return None


def quant_of(filename: str, info: GGUFInfo | None) -> str:
    """The quantization as the file's name says it (Q4_K_M, UD-Q4_K_XL), else as its header does."""
    stem = SPLIT.sub(r"\g<stem>", filename).removesuffix(".gguf")
    tags = QUANT_TAG.findall(stem)
    if tags:
        return str(tags[-1]).upper()
    return (info.quantization if info else None) or stem


_HEADERS: dict[tuple[Path, int, int], tuple[GGUFInfo | None, str | None]] = {}
_HEADERS_LOCK = threading.Lock()


def _header(path: Path) -> tuple[GGUFInfo | None, str | None]:
    """The file's header and why it is not usable, remembered while its size and mtime stay the same (a rescan
    reads only new or changed files)."""
    try:
        st = path.stat()
    except OSError as exc:
        return None, f"{path.name} cannot be read ({exc.strerror or exc})"
    key = (path.resolve(), st.st_size, st.st_mtime_ns)
    with _HEADERS_LOCK:
        if key in _HEADERS:
            return _HEADERS[key]
    try:
        info: GGUFInfo | None = read_gguf(path)
        why = unusable(info) if info else None
    except ModelFileError as exc:
        info, why = None, exc.detail
    with _HEADERS_LOCK:
        _HEADERS[key] = (info, why)
    return info, why


def examine(c: _Candidate) -> tuple[Found, GGUFInfo | None]:
    info: GGUFInfo | None = None
    skipped = c.missing
    size = sum(p.stat().st_size for p in c.parts if p.exists())
    if skipped is None:
        info, skipped = _header(c.parts[0])
    label = c.label or f"{c.repo} {quant_of(c.parts[0].name, info)}"
    name = c.prefix + (c.label if c.label else f"{c.repo}:{quant_of(c.parts[0].name, info)}")
    return Found(c.source, label, name, c.parts[0], c.parts, size, skipped), info


def scan(settings: Settings, env: Mapping[str, str] | None = None) -> list[Found]:
    """Every model found, docqa's own pulled ones first, then DOCQA_MODEL_DIRS, then the tools' folders
    (if DOCQA_DISCOVER_MODELS). A file reached twice (a symlink, a folder listed twice) is listed once."""
    candidates: list[Iterator[_Candidate]] = [_pulled(settings.models_dir)]
    for folder in filter(None, (d.strip() for d in (settings.model_dirs or "").split(","))):
        candidates.append(_folder(Path(folder).expanduser(), "folder", ""))
    if settings.discover_models:
        readers = {"Ollama": _ollama, "LM Studio": _lmstudio, "Hugging Face": _hf_cache, "llama.cpp": _llamacpp}
        candidates += [readers[source](root) for source, root in tool_folders(env)]
    found: list[Found] = []
    seen_files: set[Path] = set()
    names: set[str] = set()
    for stream in candidates:
        for candidate in stream:
            real = candidate.parts[0].resolve()
            if real in seen_files:
                continue
            seen_files.add(real)
            item, info = examine(candidate)
            item.info = info
            if item.name in names:  # two files with the same quantization in one repo: name the file
                item.name = f"{candidate.prefix}{candidate.repo or item.label}/{item.path.name}"
                item.label = f"{candidate.repo or item.label}/{item.path.name}"
            names.add(item.name)
            found.append(item)
    return found


def spec_of(found: Found, info: GGUFInfo | None = None) -> FoundSpec:
    """The registry's description of a found model, its weights counted over every part."""
    base = load_spec(found.name, found.path, info)
    spec = FoundSpec(**{f.name: getattr(base, f.name) for f in fields(ModelSpec)}, found=found)
    if spec.shape is not None and len(found.parts) > 1:
        spec.shape = replace(spec.shape, weights_bytes=found.size_bytes)
    return spec


def add_found(registry: Registry, settings: Settings, env: Mapping[str, str] | None = None) -> None:
    """Offer every usable model found on disk under its name; keep the others, with why, in `registry.skipped`."""
    for item in scan(settings, env):
        if item.skipped is not None or item.name in registry.specs:
            if item.skipped is not None:
                registry.skipped.append(item)
            continue
        spec = spec_of(item, item.info)
        if spec.error:
            item.skipped = spec.error
            registry.skipped.append(item)
            continue
        registry.specs[item.name] = spec


def pulled(models_dir: Path, path: Path) -> Found | None:
    """The model `docqa pull` just put at `path` (a split model's first part), as discovery names it."""
    for candidate in _pulled(models_dir):
        if candidate.parts[0] == path:
            return examine(candidate)[0]
    return None


def add_pulled(registry: Registry, models_dir: Path, path: Path) -> str | None:
    """Offer a model just pulled without a restart; its name, or None when it is not a usable model."""
    for candidate in _pulled(models_dir):
        if candidate.parts[0] == path:
            item, info = examine(candidate)
            break
    else:
        return None
    if item.skipped is not None:
        registry.skipped.append(item)
        return None
    spec = spec_of(item, info)
    if spec.error:
        return None
    registry.specs[item.name] = spec
    return item.name


RESCAN_S = 5.0  # GET /api/models looks for new models at most this often
_last_rescan: dict[int, float] = {}
_RESCAN_LOCK = threading.Lock()


def rescan(registry: Registry, settings: Settings, env: Mapping[str, str] | None = None) -> list[str]:
    """Offer the models that appeared since the registry was built (an `ollama pull` or `docqa pull` while docqa
    runs), without a restart; names already offered stay as they are. Returns the names added."""
    now = time.monotonic()
    if now - _last_rescan.get(id(registry), -RESCAN_S) < RESCAN_S or not _RESCAN_LOCK.acquire(blocking=False):
        return []  # looked recently, or another request is looking now
    try:
        _last_rescan[id(registry)] = now
        return _add_new(registry, settings, env)
    finally:
        _RESCAN_LOCK.release()


def _add_new(registry: Registry, settings: Settings, env: Mapping[str, str] | None) -> list[str]:
    added = []
    skipped = {f.name for f in registry.skipped}
    for item in scan(settings, env):
        if item.name in registry.specs or item.name in skipped:
            continue
        if item.skipped is not None:
            registry.skipped.append(item)
            continue
        spec = spec_of(item, item.info)
        if spec.error is None:
            registry.specs[item.name] = spec
            added.append(item.name)
    return added
