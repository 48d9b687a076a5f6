"""Real llama-server instances for the remote-model tests.

The binary is built once from the llama.cpp that llama-cpp-python vendors (bench/llama_bench.py;
`make llama-server`) and cached under ~/.cache/docqa/llama.cpp-src/build; every test run reuses it.
Each instance serves the embedded SmolLM2 on loopback, on a free port, with one slot, as
bench/llama_server.py starts it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from bench import llama_bench
from tests.browser import free_port


def binary() -> Path:
    return llama_bench.build(target="llama-server")


class LlamaServer:
    def __init__(self, model: Path, log: Path, ctx: int = 2048, threads: int = 1, slots: int = 1,
                 slot_save: Path | None = None, api_key: str | None = None, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.args = [str(binary()), "-m", str(model), "-c", str(ctx * slots), "-t", str(threads), "-tb", str(threads),
                     "--port", str(self.port), "--host", "127.0.0.1", "-np", str(slots), "-fa", "on", "--no-webui",
                     "--no-repack"]
        if slot_save is not None:
            self.args += ["--slot-save-path", str(slot_save)]
        if api_key:
            self.args += ["--api-key", api_key]
        self.log = log
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120) -> LlamaServer:
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **self.env}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama-server did not start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a crash would end it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
