"""docqa side by side with llama.cpp's own `llama-server`, which is what a user would run instead.

    python -m bench.run server      # writes bench/results/server.json (llama-server builds once, minutes)

Both serve the same model (the embedded SmolLM2 Q4_1) with the same threads, the same context size, the
same llama.cpp (llama-server is built from the copy vendored in the llama-cpp-python sdist,
bench/llama_bench.py), extra buffer types as docqa chooses them on this CPU (`--no-repack` when docqa
turns them off), each with its own defaults otherwise (llama-server's flash attention is `auto`, on for
this CPU; docqa's is off at this size, bench/flash.py), and answer the same questions over the same
~4,000-token lease with 16 answer tokens, greedy, streamed:
- cold: a fresh server's first question (llama-server: the document in the user message; docqa: a
  session over the uploaded document, its instructions and page/line markers included);
- warm: a second question about the same document (llama-server's `cache_prompt` prefix reuse;
  docqa's resident KV cells), asked with `history: false` as llama-server gets no earlier turns;
- restart: the server stopped and started again, then a third question (llama-server keeps its
  cache in memory only; docqa reads the document's KV snapshot back from disk).
Each side's first question comes once its model is loaded (llama-server's /health answers then; docqa
loads its default model at start, DOCQA_PRELOAD, and its health says when the runner is ready).
Time to first token (first streamed token) and total are taken by the client, over HTTP on loopback.
The stop before the restart comes 0 s after the follow-up's answer (issue #30: the snapshot may still
be being written; `docqa_stop_reports` keeps what docqa's log said of it). Rounds alternate who goes
first; medians per cell. Targets (issue #30): cold ≤ 1.0× llama-server, warm ≤ 0.8×, restart ≥ 10×
faster than llama-server's. For reference, llama-server with `-fa off` too (cold and warm:
what a user who tuned it would get).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import llama_bench
from bench.sidebyside import BATCH_QUESTIONS, document_text

MAX_TOKENS = 16


def _stream(client: httpx.Client, url: str, body: dict[str, Any], token_event: str) -> tuple[float, float, str]:
    """(seconds to the first token, seconds to the end, the last data line) of one streamed request."""
    t0 = time.perf_counter()
    first = 0.0
    last = ""
    timings = ""
    with client.stream("POST", url, json=body, headers={"accept": "text/event-stream"}) as r:
        r.raise_for_status()
        event = ""
        for line in r.iter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                last = line.partition(":")[2].strip()
                if '"timings"' in last:
                    timings = last
                if not first and _is_token(event, last, token_event):
                    first = time.perf_counter() - t0
    return first, time.perf_counter() - t0, (timings if token_event == "openai" else last)


def _is_token(event: str, data: str, token_event: str) -> bool:
    if token_event == "docqa":
        return event == "token"
    if not data or data == "[DONE]":
        return False
    delta = json.loads(data).get("choices", [{}])[0].get("delta", {})
    return bool(delta.get("content"))


class LlamaServer:
    def __init__(self, model: Path, ctx: int, threads: int, no_repack: bool, log: Path,
                 flash: str | None = None) -> None:
        from tests.browser import free_port

        self.port = free_port()
        self.args = [str(llama_bench.build(target="llama-server")), "-m", str(model), "-c", str(ctx),
                     "-t", str(threads), "-tb", str(os.cpu_count() or threads), "--port", str(self.port),
                     "--host", "127.0.0.1", "-np", "1", "--no-webui"]
        if flash is not None:
            self.args += ["-fa", flash]
        if no_repack:
            self.args.append("--no-repack")
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LlamaServer:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"llama-server did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(20)

    def ask(self, document: str, question: str) -> dict[str, float]:
        body = {"messages": [{"role": "user", "content": f"{document}\nQuestion: {question}"}], "stream": True,
                "max_tokens": MAX_TOKENS, "temperature": 0, "cache_prompt": True, "seed": 1}
        with httpx.Client(base_url=self.url, timeout=600) as c:
            ttft, total, last = _stream(c, "/v1/chat/completions", body, "openai")
        timings = json.loads(last).get("timings", {}) if last else {}
        return {"ttft_s": ttft, "total_s": total, "prompt_n": float(timings.get("prompt_n", 0)),
                "cache_n": float(timings.get("cache_n", 0))}


def model_ready(server: Any, timeout_s: float = 120.0) -> Any:
    """Wait until docqa has loaded its default model (DOCQA_PRELOAD), as the bench waits for llama-server's
    /health, which answers once its model is loaded: neither side's first question pays for loading."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runner = httpx.get(f"{server.url}/api/health", timeout=10).json()["details"]["models"]["default"]["runner"]
        if runner["state"] == "ready":
            return server
        time.sleep(0.1)
    raise SystemExit("docqa did not load its model in time")


def _docqa(data: Path) -> Any:
    from tests.browser import Server

    # read-ahead off: cold is the question reading the document itself, as llama-server does (bench/priorities.py
    # measures read-ahead)
    return Server(data, env={"DOCQA_RATE_UPLOADS": "0", "DOCQA_RATE_QUESTIONS": "0", "DOCQA_SEED": "1",
                             "DOCQA_READ_AHEAD": "false"})


def bench_server(rounds: int = 2) -> None:
    from bench.run import _settings, write
    from docqa.engine.local import cpu
    from docqa.engine.local.runtime import default_threads
    from docqa.engine.models import ModelRegistry

    text = document_text()
    settings = _settings(Path(tempfile.mkdtemp()))
    spec = ModelRegistry(settings).get(None)
    extra, why = cpu.use_extra_buffers(settings.extra_buffers)
    threads = settings.n_threads or default_threads()
    cells: dict[str, dict[str, list[float]]] = {}
    prompt_tokens: dict[str, int] = {}
    sources: list[str] = []  # where docqa's prefix came from after each restart (disk: its snapshot)
    stops: list[str] = []  # what docqa's log said of its pending snapshots as it stopped

    def add(side: str, phase: str, result: dict[str, float]) -> None:
        cell = cells.setdefault(f"{side}_{phase}", {"ttft_s": [], "total_s": []})
        cell["ttft_s"].append(result["ttft_s"])
        cell["total_s"].append(result["total_s"])

    def run_docqa(tmp: Path, n_ctx_box: list[int]) -> None:
        server = model_ready(_docqa(tmp / "docqa").start())
        try:
            with httpx.Client(base_url=server.url, timeout=600) as http:
                doc = http.post("/api/documents", files={"file": ("lease.txt", text.encode(), "text/plain")}).json()
                session = http.post("/api/sessions", json={"document_ids": [doc["id"]]}).json()
                n_ctx_box.append(session["plan"]["n_ctx"])
                flash_box.append(session["plan"]["flash_attn"])
                prompt_tokens["docqa"] = session["plan"]["prompt_tokens"]
                url = f"/api/sessions/{session['id']}/questions"
                body = {"max_tokens": MAX_TOKENS, "sampling": {"temperature": 0, "seed": 1}, "history": False}
                for phase, q in (("cold", BATCH_QUESTIONS[0]), ("warm", BATCH_QUESTIONS[1])):
                    ttft, total, last = _stream(http, url, {**body, "question": q}, "docqa")
                    add("docqa", phase, {"ttft_s": ttft, "total_s": total})
            # stopped 0 s after the follow-up's answer (SIGINT, as Ctrl-C): the runner writes the snapshots still
            # pending before it exits, bounded by DOCQA_SNAPSHOT_STOP_WAIT, and logs what it wrote
            server.stop()
            stops.extend(line.partition(" - runtime - ")[2] for line in server.log_tail(400).splitlines()
                         if "stopped after writing" in line or "no KV snapshot was pending" in line
                         or "not written within" in line)
            model_ready(server.start())
            with httpx.Client(base_url=server.url, timeout=600) as http:
                ttft, total, last = _stream(http, url, {**body, "question": BATCH_QUESTIONS[2]}, "docqa")
                add("docqa", "restart", {"ttft_s": ttft, "total_s": total})
                sources.append(json.loads(last).get("timings", {}).get("prefix_source", "?"))
        finally:
            server.stop()

    def run_server(tmp: Path, n_ctx: int, flash: str | None = None) -> None:
        side = "llama_server" if flash is None else f"llama_server_fa_{flash}"
        server = LlamaServer(spec.path, n_ctx, threads, not extra, tmp / f"{side}.log", flash).start()
        try:
            for phase, q in (("cold", BATCH_QUESTIONS[0]), ("warm", BATCH_QUESTIONS[1])):
                result = server.ask(text, q)
                add(side, phase, result)
                if phase == "cold":
                    prompt_tokens[side] = int(result["prompt_n"] + result["cache_n"])
            if flash is not None:
                return
            server.stop()
            server.start()
            add("llama_server", "restart", server.ask(text, BATCH_QUESTIONS[2]))
        finally:
            server.stop()

    n_ctx_box: list[int] = []
    flash_box: list[bool] = []
    for r in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            order = ("docqa", "server", "off") if r % 2 == 0 else ("off", "server", "docqa")
            for side in order:
                if side == "docqa":
                    run_docqa(Path(tmp) / str(r), n_ctx_box)
                else:
                    run_server(Path(tmp), n_ctx_box[-1] if n_ctx_box else 6144, "off" if side == "off" else None)
    docqa_flash = flash_box[-1] if flash_box else None
    med = {k: {m: round(statistics.median(v), 3) for m, v in c.items() if v} for k, c in cells.items() if c["ttft_s"]}
    ratio = {
        phase: {m: round(med[f"docqa_{phase}"][m] / med[f"llama_server_{phase}"][m], 3) for m in ("ttft_s", "total_s")}
        for phase in ("cold", "warm", "restart")
    }
    ratio_fa_off = {
        phase: {m: round(med[f"docqa_{phase}"][m] / med[f"llama_server_fa_off_{phase}"][m], 3)
                for m in ("ttft_s", "total_s")}
        for phase in ("cold", "warm")
    }
    write("server", {
        "model": spec.path.name, "threads": threads, "extra_buffers": extra, "extra_buffers_reason": why,
        "max_tokens": MAX_TOKENS, "rounds": rounds, "prompt_tokens": prompt_tokens, "medians": med,
        "docqa_prefix_source_after_restart": sources, "docqa_stop_reports": stops,
        "ratio_docqa_over_llama_server": ratio,
        "ratio_docqa_over_llama_server_fa_off": ratio_fa_off,
        "docqa_flash_attn": docqa_flash,
        "restart_speedup": round(med["llama_server_restart"]["total_s"] / med["docqa_restart"]["total_s"], 2),
        "targets": {"cold": "≤ 1.0", "warm": "≤ 0.8", "restart_speedup": "≥ 10"},  # issue #30
        "runs": cells,
    })
