"""Read a GGUF file's metadata (architecture, context, attention shape, chat template) without
loading weights.

The `gguf` package's reader parses every array into numpy and takes seconds on a 49K-token
vocabulary; this reader walks the key/value section with `struct`, skipping arrays it does not
need, and stops before the tensor data. It reads only the header (the key/value section and the
tensor index), so it is cheap enough to run for every model listing; the tensor index tells how
long the file must be, so a truncated download is reported here rather than when llama.cpp
fails to load it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from docqa.errors import ModelFileError  # noqa: F401 - re-exported (callers found it here)

GGUF_MAGIC = b"GGUF"
# GGUF value types → struct format (None: string, array handled separately)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_KEEP_ARRAYS = {"general.languages"}
DEFAULT_ALIGNMENT = 32




@dataclass
class GGUFInfo:
    path: Path
    size_bytes: int
    metadata: dict[str, Any]
    array_lengths: dict[str, int] = field(default_factory=dict)
    header_bytes: int = 0  # the magic, counts and key/value section (what a model's identity hashes)
    n_tensors: int = 0
    expected_bytes: int = 0  # where the last tensor's data ends, per the tensor index
    n_params: int = 0  # the weights' element count, summed over the tensor index

    @property
    def quantization(self) -> str | None:
        """The file type as llama.cpp names it ("Q4_1", "Q4_K_M", "F16"), from general.file_type."""
        from gguf.constants import LlamaFileType

        ftype = self.metadata.get("general.file_type")
        try:
            return LlamaFileType(int(ftype)).name.removeprefix("MOSTLY_").removeprefix("ALL_") if ftype is not None \
                else None
        except (ValueError, TypeError):
            return None

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
    except (struct.error, UnicodeDecodeError, MemoryError, OverflowError, ValueError) as exc:
        raise ModelFileError(f"{path.name} is not a valid GGUF model file (its header is damaged).") from exc
    except OSError as exc:
        raise ModelFileError(f"The model file {path} cannot be read ({exc.strerror or exc}).") from exc


def read_gguf_header(data: bytes, name: str, size_bytes: int) -> GGUFInfo:
    """The key/value section of a GGUF from its first bytes (e.g. a range request to a hub), without the tensor
    index; struct.error when `data` stops before the section's end (ask for more bytes)."""
    import io

    fh = io.BytesIO(data)
    n_tensors, meta, lengths = _metadata(fh, Path(name))
    if fh.tell() > len(data):
        raise struct.error("unexpected end of the bytes given")
    return GGUFInfo(Path(name), size_bytes, meta, lengths, fh.tell(), n_tensors)


def _metadata(fh: BinaryIO, path: Path) -> tuple[int, dict[str, Any], dict[str, int]]:
    """The tensor count, metadata and array lengths; `fh` is left at the end of the key/value section."""
    if fh.read(4) != GGUF_MAGIC:
        raise ModelFileError(f"{path.name} is not a GGUF model file (llama.cpp needs .gguf).")
    (version,) = struct.unpack("<I", _exact(fh, 4))
    if version < 2:
        raise ModelFileError(f"{path.name} uses GGUF version {version}, which is too old.")
    n_tensors, n_kv = struct.unpack("<QQ", _exact(fh, 16))
    if n_kv > 100_000 or n_tensors > 1_000_000:
        raise ModelFileError(f"{path.name} is not a valid GGUF model file.")
    meta: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for _ in range(n_kv):
        key = _string(fh)
        (vtype,) = struct.unpack("<I", _exact(fh, 4))
        if vtype == _ARRAY:
            (etype,) = struct.unpack("<I", _exact(fh, 4))
            (count,) = struct.unpack("<Q", _exact(fh, 8))
            lengths[key] = count
            values = _array(fh, etype, count, keep=key in _KEEP_ARRAYS)
            if values is not None:
                meta[key] = values
        else:
            meta[key] = _value(fh, vtype)
    return n_tensors, meta, lengths


def _read(fh: BinaryIO, path: Path) -> GGUFInfo:
    n_tensors, meta, lengths = _metadata(fh, path)
    header_bytes = fh.tell()
    size = path.stat().st_size
    if header_bytes > size:  # an array skipped by seeking ran past the end of the file
        raise struct.error("metadata runs past the end of the file")
    expected, n_params = _tensor_data_end(fh, n_tensors, int(meta.get("general.alignment") or DEFAULT_ALIGNMENT))
    if expected > size:
        raise ModelFileError(
            f"{path.name} is truncated: it has {size:,} bytes but its tensors need {expected:,} "
            "(an interrupted download?)."
        )
    return GGUFInfo(path, size, meta, lengths, header_bytes, n_tensors, expected, n_params)


def _tensor_data_end(fh: BinaryIO, n_tensors: int, alignment: int) -> tuple[int, int]:
    """Read the tensor index; return the offset just past the last tensor's data, and the element count."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    end = 0
    n_params = 0
    for _ in range(n_tensors):
        _string(fh)
        (n_dims,) = struct.unpack("<I", _exact(fh, 4))
        if n_dims > 8:
            raise struct.error(f"tensor with {n_dims} dimensions")
        dims = struct.unpack(f"<{n_dims}Q", _exact(fh, 8 * n_dims))
        ttype, offset = struct.unpack("<IQ", _exact(fh, 12))
        elements = 1
        for d in dims:
            elements *= d
        n_params += elements
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
        except (ValueError, KeyError):  # a type newer than the gguf package: count its offset only
            nbytes = 0
        else:
            n = 1
            for d in dims:
                n *= d
            nbytes = n // block * type_size
        end = max(end, offset + nbytes)
    if n_tensors == 0 or alignment <= 0:
        return 0, n_params
    data_start = -(-fh.tell() // alignment) * alignment
    return data_start + end, n_params


def _exact(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise struct.error(f"unexpected end of file ({len(data)} of {n} bytes)")
    return data


def _string(fh: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", _exact(fh, 8))
    if n > 64 * 1024 * 1024:
        raise struct.error("string too long")
    return _exact(fh, n).decode("utf-8")


def _value(fh: BinaryIO, vtype: int) -> Any:
    if vtype == _STRING:
        return _string(fh)
    fmt = _SCALARS.get(vtype)
    if fmt is None:
        raise struct.error(f"unknown GGUF value type {vtype}")
    (v,) = struct.unpack("<" + fmt, _exact(fh, struct.calcsize(fmt)))
    return v


def _array(fh: BinaryIO, etype: int, count: int, keep: bool) -> list[Any] | None:
    if etype == _STRING:
        out: list[Any] | None = [] if keep else None
        for _ in range(count):
            (n,) = struct.unpack("<Q", _exact(fh, 8))
            if out is None:
                fh.seek(n, 1)
            else:
                out.append(_exact(fh, n).decode("utf-8", "replace"))
        return out
    fmt = _SCALARS.get(etype)
    if fmt is None:
        raise struct.error(f"unknown GGUF array type {etype}")
    size = struct.calcsize(fmt)
    if keep:
        return list(struct.unpack(f"<{count}{fmt}", _exact(fh, size * count)))
    fh.seek(size * count, 1)
    return None
