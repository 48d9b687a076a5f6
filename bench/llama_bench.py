"""llama.cpp's own `llama-bench` and `llama-server`, built once from the llama.cpp source vendored in the
llama-cpp-python sdist.

    python -m bench.llama_bench build            # extract + cmake build (minutes, once); prints the binary path
    python -m bench.llama_bench build-server     # the same for llama-server (bench/llama_server.py runs it)
    python -m bench.llama_bench run ARGS...      # run the cached binary with ARGS (-o json added if absent)

The source is the exact llama.cpp docqa links against (llama-cpp-python==0.3.36 vendors it), so the comparison in
`python -m bench.run sidebyside` is llama.cpp vs llama.cpp-through-docqa, not two different llama.cpp revisions.
The sdist comes from PyPI through pip (`pip download --no-deps --no-binary :all:`) unless a copy is already at
$DOCQA_LLAMA_SDIST or /tmp/dl/. Build outputs live under ~/.cache/docqa/llama.cpp-src and are reused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

VERSION = "0.3.36"
SDIST_NAME = f"llama_cpp_python-{VERSION}.tar.gz"
CACHE = Path.home() / ".cache" / "docqa"
SRC = CACHE / "llama.cpp-src"
BUILD = SRC / "build"
BINARY = BUILD / "bin" / "llama-bench"
SERVER = BUILD / "bin" / "llama-server"
CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_CURL=OFF",
    "-DGGML_NATIVE=ON",
]


def _sdist() -> Path:
    for candidate in (os.environ.get("DOCQA_LLAMA_SDIST"), f"/tmp/dl/{SDIST_NAME}"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    dest = CACHE / "sdist"
    dest.mkdir(parents=True, exist_ok=True)
    if not (dest / SDIST_NAME).is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={VERSION}", "-d", str(dest)], check=True)
    return dest / SDIST_NAME


def extract() -> Path:
    """The vendored llama.cpp tree at SRC (extracted once; a marker file records which sdist it came from)."""
    marker = SRC / ".docqa-sdist"
    if marker.is_file() and marker.read_text().strip() == VERSION:
        return SRC
    sdist = _sdist()
    prefix = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp, tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        tar.extractall(tmp, members=members, filter="data")
        if SRC.exists():
            shutil.rmtree(SRC)
        shutil.move(str(Path(tmp) / prefix), str(SRC))
    marker.write_text(VERSION + "\n")
    return SRC


def build(jobs: int = 2, target: str = "llama-bench") -> Path:
    """Build llama-bench (or llama-server) once; later calls return the cached binary."""
    binary = BUILD / "bin" / target
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    src = extract()
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(["cmake", "-S", str(src), "-B", str(BUILD), *generator, *CMAKE_FLAGS], check=True)
    subprocess.run(["cmake", "--build", str(BUILD), "--target", target, f"-j{jobs}"], check=True)
    if not binary.is_file():
        raise SystemExit(f"build finished but {binary} is missing")
    return binary


def run(args: list[str], timeout: float | None = None) -> list[dict[str, Any]]:
    """Run llama-bench with args and return its JSON records (one per test)."""
    binary = build()
    if "-o" not in args:
        args = [*args, "-o", "json"]
    proc = subprocess.run([str(binary), *args], check=True, capture_output=True, text=True, timeout=timeout)
    return json.loads(proc.stdout)


def main(argv: list[str]) -> None:
    if not argv or argv[0] == "build":
        print(build())
    elif argv[0] == "build-server":
        print(build(target="llama-server"))
    elif argv[0] == "run":
        print(json.dumps(run(argv[1:]), indent=2))
    else:
        raise SystemExit("usage: python -m bench.llama_bench build | run ARGS...")


if __name__ == "__main__":
    main(sys.argv[1:])
