"""Read a GGUF file's metadata (architecture, context, attention shape, chat template) without
loading weights.

The `gguf` package's reader parses every array into numpy and takes seconds on a 49K-token
vocabulary; this reader walks the key/value section with `struct`, skipping arrays it does not
need, and stops before the tensor data. It reads only the header, so it is cheap enough to run
for every model listing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from docqa.errors import DocqaError

GGUF_MAGIC = b"GGUF"
# GGUF value types → struct format (None: string, array handled separately)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_KEEP_ARRAYS = {"general.languages"}


class ModelFileError(DocqaError):
    status_code = 422
    code = "bad_model"


@dataclass
class GGUFInfo:
    path: Path
    size_bytes: int
    metadata: dict[str, Any]
    array_lengths: dict[str, int] = field(default_factory=dict)
    header_bytes: int = 0

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    def arch(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def n_vocab(self) -> int:
        return int(self.array_lengths.get("tokenizer.ggml.tokens") or self.arch("vocab_size", 0) or 0)

    @property
    def chat_template(self) -> str | None:
        return self.metadata.get("tokenizer.chat_template")


def read_gguf(path: Path | str) -> GGUFInfo:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"The model file {path} does not exist.")
    try:
        with path.open("rb") as fh:
            return _read(fh, path)
    except (struct.error, UnicodeDecodeError, MemoryError, OverflowError) as exc:
        raise ModelFileError(f"{path.name} is not a valid GGUF model file (its header is damaged).") from exc


def _read(fh: BinaryIO, path: Path) -> GGUFInfo:
    if fh.read(4) != GGUF_MAGIC:
        raise ModelFileError(f"{path.name} is not a GGUF model file (llama.cpp needs .gguf).")
    (version,) = struct.unpack("<I", fh.read(4))
    if version < 2:
        raise ModelFileError(f"{path.name} uses GGUF version {version}, which is too old.")
    _n_tensors, n_kv = struct.unpack("<QQ", fh.read(16))
    if n_kv > 100_000:
        raise ModelFileError(f"{path.name} is not a valid GGUF model file.")
    meta: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for _ in range(n_kv):
        key = _string(fh)
        (vtype,) = struct.unpack("<I", fh.read(4))
        if vtype == _ARRAY:
            (etype,) = struct.unpack("<I", fh.read(4))
            (count,) = struct.unpack("<Q", fh.read(8))
            lengths[key] = count
            values = _array(fh, etype, count, keep=key in _KEEP_ARRAYS)
            if values is not None:
                meta[key] = values
        else:
            meta[key] = _value(fh, vtype)
    return GGUFInfo(path, path.stat().st_size, meta, lengths, fh.tell())


def _string(fh: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", fh.read(8))
    if n > 64 * 1024 * 1024:
        raise struct.error("string too long")
    return fh.read(n).decode("utf-8")


def _value(fh: BinaryIO, vtype: int) -> Any:
    if vtype == _STRING:
        return _string(fh)
    fmt = _SCALARS.get(vtype)
    if fmt is None:
        raise struct.error(f"unknown GGUF value type {vtype}")
    (v,) = struct.unpack("<" + fmt, fh.read(struct.calcsize(fmt)))
    return v


def _array(fh: BinaryIO, etype: int, count: int, keep: bool) -> list[Any] | None:
    if etype == _STRING:
        out = [] if keep else None
        for _ in range(count):
            (n,) = struct.unpack("<Q", fh.read(8))
            s = fh.read(n)
            if out is not None:
                out.append(s.decode("utf-8", "replace"))
        return out
    fmt = _SCALARS.get(etype)
    if fmt is None:
        raise struct.error(f"unknown GGUF array type {etype}")
    size = struct.calcsize(fmt)
    if keep:
        return list(struct.unpack(f"<{count}{fmt}", fh.read(size * count)))
    fh.seek(size * count, 1)
    return None
