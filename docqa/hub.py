"""The Hugging Face Hub, read: a model reference (`hf:ORG/REPO[:QUANT]`), the hub's address and token, and
which GGUF files a reference names (a quantization, a split model's parts), with the hub's errors as sentences.

pull.py downloads what this resolves; engine/recommend.py reads a resolved file's header to say whether it
fits. huggingface_hub does the talking (the hub's API, HF_TOKEN, redirects, retries).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from docqa.errors import (
    DocqaError,
    HubGated,
    HubNotFound,
    HubOffline,
    HubUnreachable,
    InvalidRequest,
)

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_QUANT = "Q4_K_M"  # llama-server's -hf default
SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
# A split model's part as a whole file name (discovery.py groups a folder's parts by it)
SPLIT_NAME = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
# llama.cpp's quantization names as they appear in file names (Q4_K_M, IQ3_XXS, Q8_0, BF16, UD-Q4_K_XL …)
QUANT_TAG = re.compile(r"(?<![A-Za-z0-9])((?:UD-)?(?:I?Q\d(?:_[A-Z0-9]+)*|TQ\d_\d|MXFP4(?:_MOE)?|BF16|F16|F32))"
                       r"(?![A-Za-z0-9])", re.IGNORECASE)
REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Ref:
    """What a person asked for: a repository and a quantization, or an exact file in it."""

    repo: str
    quant: str | None = None
    filename: str | None = None

    @classmethod
    def parse(cls, text: str) -> Ref:
        raw = text.strip()
        body = re.sub(r"^(hf:|hf\.co/|https?://(www\.)?huggingface\.co/)", "", raw, flags=re.IGNORECASE)
        if body == raw and not raw.lower().startswith("hf"):
            raise InvalidRequest(f"{text!r} is not a model reference docqa can pull: give hf:ORG/REPO:QUANT "
                                 "(e.g. hf:Qwen/Qwen3-4B-Instruct-2507-GGUF:Q4_K_M) or hf:ORG/REPO/FILE.gguf.")
        parts = body.split("/")
        if len(parts) > 2 and parts[-1].lower().endswith(".gguf"):
            repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
            quant = None
        else:
            repo, _, quant_text = body.partition(":")
            filename, quant = None, (quant_text.strip() or None)
        if not REPO.match(repo):
            raise InvalidRequest(f"{text!r} does not name a repository as ORG/REPO (e.g. hf:Qwen/Qwen3-4B-"
                                 "Instruct-2507-GGUF:Q4_K_M).")
        return cls(repo, quant, filename)

    def __str__(self) -> str:
        if self.filename:
            return f"hf:{self.repo}/{self.filename}"
        return f"hf:{self.repo}" + (f":{self.quant}" if self.quant else "")


@dataclass(frozen=True)
class Hub:
    endpoint: str
    token: str | None
    offline: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Hub:
        env = os.environ if env is None else env
        offline = (env.get("HF_HUB_OFFLINE") or "").strip().lower() in ("1", "true", "yes", "on")
        return cls((env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"), env.get("HF_TOKEN") or None, offline)


@dataclass(frozen=True)
class RemoteFile:
    path: str  # in the repository
    size: int
    sha256: str | None  # the LFS object's sha256, from the hub's file list


@dataclass(frozen=True)
class Resolved:
    ref: Ref
    revision: str  # the commit the files are taken from
    quant: str
    files: list[RemoteFile]  # a split model's parts in order

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {"repo": self.ref.repo, "quant": self.quant, "revision": self.revision,
                "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files]}


def _quant_of(path: str) -> str | None:
    name = SPLIT_NAME.sub(r"\g<stem>", path.rsplit("/", 1)[-1]).removesuffix(".gguf")
    tags = QUANT_TAG.findall(name)
    return str(tags[-1]).upper() if tags else None


def _is_projector(path: str) -> bool:
    return "mmproj" in path.rsplit("/", 1)[-1].lower()


def _first_part_first(path: str) -> tuple[bool, int, str]:
    m = SPLIT.search(path)
    return (m is not None and int(m.group(1)) != 1, len(path), path)


def hub_errors(hub: Hub, repo: str) -> Callable[[Exception], DocqaError]:
    """Turns huggingface_hub's exceptions into docqa's typed errors, each with a sentence."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    def convert(exc: Exception) -> DocqaError:
        if isinstance(exc, DocqaError):
            return exc
        if isinstance(exc, GatedRepoError):
            return HubGated(f"{repo} on {hub.endpoint} is gated: accept its conditions on the hub's page, then "
                            "set HF_TOKEN to a token of that account.")
        if isinstance(exc, RepositoryNotFoundError):
            return HubNotFound(f"There is no repository {repo} on {hub.endpoint} (or it is private: set HF_TOKEN "
                               "to a token that may read it).")
        if isinstance(exc, RevisionNotFoundError):
            return HubNotFound(f"{repo} on {hub.endpoint} has no such revision.")
        if isinstance(exc, OfflineModeIsEnabled):
            return HubOffline(f"Offline mode is on (HF_HUB_OFFLINE): docqa cannot pull {repo}.")
        if isinstance(exc, HfHubHTTPError):
            status = exc.response.status_code if exc.response is not None else "?"
            return HubUnreachable(f"{hub.endpoint} answered {status} for {repo}: {str(exc).splitlines()[0]}")
        return HubUnreachable(f"docqa could not reach {hub.endpoint} for {repo} ({type(exc).__name__}: {exc}).")

    return convert


def _listing(ref: Ref, hub: Hub) -> tuple[str, dict[str, Any]]:
    """The repository's commit and its files (with sizes and LFS sha256), in one API call."""
    from huggingface_hub import HfApi

    if hub.offline:
        raise HubOffline(f"Offline mode is on (HF_HUB_OFFLINE is set): docqa cannot reach the hub for {ref}. Unset "
                         "it, or use a model already on disk (docqa models).")
    try:
        info = HfApi(endpoint=hub.endpoint, token=hub.token).model_info(ref.repo, files_metadata=True)
    except Exception as exc:  # huggingface_hub's and the HTTP client's errors, each turned into a sentence
        raise hub_errors(hub, ref.repo)(exc) from exc
    siblings = {s.rfilename: s for s in info.siblings or []}
    if not any(p.lower().endswith(".gguf") for p in siblings):
        raise HubNotFound(f"{ref.repo} has no GGUF files; docqa runs GGUF models (look for a repository "
                          "named …-GGUF).")
    return info.sha or "main", siblings


def _models(siblings: dict[str, Any]) -> list[str]:
    return sorted(p for p in siblings if p.lower().endswith(".gguf") and not _is_projector(p))


def _resolved(ref: Ref, revision: str, siblings: dict[str, Any], chosen: str) -> Resolved:
    """The chosen file, or every part of a split model, with sizes and sha256."""
    files = [chosen]
    m = SPLIT.search(chosen)
    if m:
        count = int(m.group(2))
        files = [SPLIT.sub(f"-{i:05d}-of-{count:05d}.gguf", chosen) for i in range(1, count + 1)]
        absent = [f for f in files if f not in siblings]
        if absent:
            raise HubNotFound(f"{ref.repo} lists only some parts of {chosen} (missing {', '.join(absent)}).")
    remote = []
    for path in files:
        if path.startswith("/") or any(part in ("", ".", "..") for part in path.split("/")):
            raise HubUnreachable(f"{ref.repo} lists a file named {path!r}, which would land outside docqa's models "
                                 "folder; docqa does not pull it.")
        s = siblings[path]
        remote.append(RemoteFile(path, int(s.size or (s.lfs.size if s.lfs else 0) or 0),
                                 s.lfs.sha256 if s.lfs else None))
    return Resolved(ref, revision, _quant_of(chosen) or chosen.rsplit("/", 1)[-1], remote)


def resolve(ref: Ref, hub: Hub) -> Resolved:
    """Which files of the repository the reference means, with their sizes and sha256."""
    revision, siblings = _listing(ref, hub)
    models = _models(siblings)
    if ref.filename:
        if ref.filename not in siblings:
            listed = ", ".join(sorted(p for p in siblings if p.lower().endswith(".gguf"))[:12])
            raise HubNotFound(f"{ref.repo} has no file {ref.filename}; its GGUF files are: {listed}.")
        return _resolved(ref, revision, siblings, ref.filename)
    wanted = (ref.quant or DEFAULT_QUANT).upper()
    matches = [p for p in models if (_quant_of(p) or "") == wanted]
    if not matches and ref.quant is None:
        matches = models[:1]
    if not matches:
        quants = sorted({q for p in models if (q := _quant_of(p))})
        raise HubNotFound(f"{ref.repo} has no {wanted} quantization; it has {', '.join(quants) or 'none named'}.")
    return _resolved(ref, revision, siblings, min(matches, key=_first_part_first))


def resolve_all(ref: Ref, hub: Hub) -> list[Resolved]:
    """One Resolved per quantization the repository has (the first file of each, split parts together)."""
    revision, siblings = _listing(ref, hub)
    by_quant: dict[str, str] = {}
    for p in sorted(_models(siblings), key=_first_part_first):
        by_quant.setdefault(_quant_of(p) or p, p)
    out = []
    for chosen in by_quant.values():
        try:
            out.append(_resolved(ref, revision, siblings, chosen))
        except HubNotFound:
            continue  # a split model with parts missing from the listing is not offered
    return out
