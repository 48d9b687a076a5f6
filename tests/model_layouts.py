"""Other tools' model folders, built in a temporary HOME the way each tool lays them out.

Each builder follows the tool's documented format and holds the real embedded GGUF (hard-linked: the
same bytes, no copy, distinct paths), or small GGUFs written with the `gguf` package for what the
embedded file cannot stand for (a vision projector, a LoRA adapter, a split model).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
from gguf import GGUFWriter


def place(src: Path, dst: Path) -> Path:
    """`dst` holding `src`'s bytes: a hard link where the file system allows, else a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():  # a blob two manifests share
        return dst
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def ollama_model(root: Path, name: str, tag: str, blob_source: Path | None, *, digest: str | None = None,
                 host: str = "registry.ollama.ai", namespace: str = "library") -> Path:
    """An `ollama pull`ed model: manifests/<host>/<namespace>/<name>/<tag> naming blobs/sha256-<hex>."""
    digest = digest or (sha256_of(blob_source) if blob_source else "0" * 64)
    if blob_source is not None:
        place(blob_source, root / "blobs" / f"sha256-{digest}")
    template = b"{{ .Prompt }}"
    template_digest = hashlib.sha256(template).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / f"sha256-{template_digest}").write_bytes(template)
    size = blob_source.stat().st_size if blob_source else 0
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": "sha256:" + "1" * 64, "size": 2},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": size},
            {"mediaType": "application/vnd.ollama.image.template", "digest": f"sha256:{template_digest}",
             "size": len(template)},
        ],
    }
    path = root / "manifests" / host / namespace / name / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return path


def hf_cache_file(hub: Path, repo: str, filename: str, source: Path, revision: str = "a" * 40) -> Path:
    """A file as huggingface_hub caches it: blobs/<sha256>, snapshots/<rev>/<file> → ../../blobs/<sha256>."""
    repo_dir = hub / ("models--" + repo.replace("/", "--"))
    etag = sha256_of(source)
    blob = place(source, repo_dir / "blobs" / etag)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    link = repo_dir / "snapshots" / revision / filename
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    return link


def tiny_gguf(path: Path, *, kind: str = "model", arch: str = "llama", split: tuple[int, int] | None = None,
              adapter: bool = False) -> Path:
    """A small valid GGUF: a 2-layer llama-shaped model, a vision projector (kind="mmproj", arch="clip"),
    a LoRA adapter, or one part of a split model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w = GGUFWriter(str(path), arch)
    w.add_type(kind)
    if adapter:
        w.add_string("adapter.type", "lora")
        w.add_float32("adapter.lora.alpha", 16.0)
    if arch != "clip":
        w.add_block_count(2)
        w.add_context_length(4096)
        w.add_embedding_length(64)
        w.add_head_count(4)
        w.add_head_count_kv(2)
        w.add_file_type(7)  # Q8_0 as a file type; the tensor itself is f32
    if split is not None:
        w.add_uint16("split.no", split[0] - 1)
        w.add_uint16("split.count", split[1])
        w.add_int32("split.tensors.count", split[1])
    w.add_tensor(f"blk.{(split or (1, 1))[0] - 1}.attn_norm.weight", np.ones(64, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
