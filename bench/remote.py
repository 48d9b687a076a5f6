"""docqa in front of llama-server (a remote model) against the same requests sent straight to it.

    python -m bench.run remote      # writes bench/results/remote.json (llama-server builds once, cached)

Everything runs here, on loopback: llama-server instances built from the llama.cpp that
llama-cpp-python vendors, each with one thread and one slot, serving the embedded SmolLM2; docqa is
a real `docqa serve` process with `DOCQA_MODELS=big=<url>` (and a second URL for the batch). Per round:
- docqa, cold and warm: a session over a ~1,200-token lease, a first question (the server restarted
  before it) and four follow-ups (`history: false`), streamed; time to first token and total, taken by
  the client; read-ahead off, so the first question reads the lease, as the direct one does;
- direct: the very prompts docqa sent (read back from llama-server's `/slots`, re-tokenized by the
  server) posted to `/completion` with the same options (stream, cache_prompt, n_predict,
  greedy), cold (server restarted) then warm;
- batch: 10 questions over the lease, one server (1 batch worker) vs two servers (2 workers).
Rounds alternate who goes first; medians per cell. Targets: llama-server's time / docqa's ≥ 0.95
(TTFT and total, cold and warm); warm follow-up prompt time ≤ 5% of the cold one.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.sidebyside import BATCH_QUESTIONS, document_text

MAX_TOKENS = 16
CTX = 4096
QUESTIONS = 5  # a cold one, then four warm follow-ups
GREEDY = {"temperature": 0, "seed": 1}


def _servers(n: int, tmp: Path) -> list[Any]:
    from docqa.fetch import embedded_model_path
    from docqa.settings import Settings
    from tests.llama_servers import LlamaServer

    model = embedded_model_path(Settings().models_dir)
    # LLAMA_SERVER_SLOTS_DEBUG: /slots shows each slot's prompt, which is how the direct side gets docqa's
    return [LlamaServer(model, tmp / f"llama-server-{i}.log", ctx=CTX, threads=1,
                        env={"LLAMA_SERVER_SLOTS_DEBUG": "1"}).start() for i in range(n)]


def _erase(server: Any) -> None:
    """A cold cache: the server restarted (on the same port; no --slot-save-path, as by default)."""
    server.stop()
    server.start()


def _docqa(tmp: Path, urls: list[str], workers: int = 1) -> Any:
    from tests.browser import Server

    # DOCQA_PRELOAD off: the local default model is not used here, and loading it would take CPU from the servers;
    # read-ahead off: the first question reads the lease itself, as the direct one does
    return Server(tmp, env={"DOCQA_RATE_UPLOADS": "0", "DOCQA_RATE_QUESTIONS": "0", "DOCQA_SEED": "1",
                            "DOCQA_MODELS": ",".join(f"big={u}" for u in urls), "DOCQA_BATCH_WORKERS": str(workers),
                            "OMP_WAIT_POLICY": "PASSIVE", "DOCQA_PRELOAD": "false",
                            "DOCQA_READ_AHEAD": "false"}).start()


def _stream(client: httpx.Client, url: str, body: dict[str, Any], docqa: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    first = 0.0
    last: dict[str, Any] = {}
    event = ""
    with client.stream("POST", url, json=body, headers={"accept": "text/event-stream"}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                data = json.loads(line.partition(":")[2].strip())
                token = event == "token" if docqa else bool(data.get("content"))
                if token and not first:
                    first = time.perf_counter() - t0
                last = data
    timings = last.get("timings", {})
    return {"ttft_s": first, "total_s": time.perf_counter() - t0,
            "prompt_s": timings.get("prefill_s") if docqa else timings.get("prompt_ms", 0) / 1000,
            "cached": timings.get("cached_tokens") if docqa else timings.get("cache_n")}


def _slot_prompt(url: str) -> list[int]:
    slot = httpx.get(f"{url}/slots", timeout=30).json()[0]
    r = httpx.post(f"{url}/tokenize", json={"content": slot["prompt"], "parse_special": True}, timeout=60)
    return [int(t) for t in r.json()["tokens"]]


def _docqa_pair(tmp: Path, llama: Any, text: str, prompts: list[list[int]]) -> list[dict[str, Any]]:
    """Cold and warm through docqa; the prompts it sent go into `prompts` (first round only)."""
    _erase(llama)
    url = llama.url
    server = _docqa(tmp, [url])
    out = []
    try:
        with httpx.Client(base_url=server.url, timeout=600) as http:
            doc = http.post("/api/documents", files={"file": ("lease.txt", text.encode(), "text/plain")}).json()
            session = http.post("/api/sessions", json={"document_ids": [doc["id"]], "model": "big"}).json()
            for q in BATCH_QUESTIONS[:QUESTIONS]:
                body = {"question": q, "max_tokens": MAX_TOKENS, "sampling": GREEDY, "history": False}
                out.append(_stream(http, f"/api/sessions/{session['id']}/questions", body, docqa=True))
                if len(prompts) < QUESTIONS:
                    prompts.append(_slot_prompt(url))
    finally:
        server.stop()
    return out


def _direct_pair(llama: Any, prompts: list[list[int]]) -> list[dict[str, Any]]:
    _erase(llama)
    out = []
    with httpx.Client(base_url=llama.url, timeout=600) as http:  # one pooled client, as docqa's remote backend has
        for tokens in prompts:
            body = {"prompt": tokens, "n_predict": MAX_TOKENS, "stream": True, "cache_prompt": True, "id_slot": 0,
                    "temperature": 0, "seed": 1, "samplers": ["top_k", "top_p", "min_p", "temperature"]}
            out.append(_stream(http, "/completion", body, docqa=False))
    return out


def _batch(tmp: Path, llamas: list[Any], text: str) -> dict[str, Any]:
    for s in llamas:
        _erase(s)
    server = _docqa(tmp, [s.url for s in llamas], workers=len(llamas))
    try:
        with httpx.Client(base_url=server.url, timeout=600) as http:
            doc = http.post("/api/documents", files={"file": ("lease.txt", text.encode(), "text/plain")}).json()
            t0 = time.perf_counter()
            r = http.post("/api/batches", json={"document_ids": [doc["id"]], "questions": BATCH_QUESTIONS[:10],
                                                "model": "big", "max_tokens": MAX_TOKENS, "sampling": GREEDY})
            batch = r.json()["id"]
            while (state := http.get(f"/api/batches/{batch}").json())["status"] in ("queued", "running"):
                time.sleep(0.2)
            elapsed = time.perf_counter() - t0
    finally:
        server.stop()
    return {"wall_s": round(elapsed, 2), "status": state["status"], "done": state["done"],
            "per_minute": round(60 * state["done"] / elapsed, 2)}


def bench_remote(rounds: int = 2) -> None:
    from bench.run import write

    text = document_text(24)
    cells: dict[str, list[dict[str, Any]]] = {"docqa_cold": [], "docqa_warm": [], "direct_cold": [],
                                               "direct_warm": []}
    prompts: list[list[int]] = []
    tmp = Path(tempfile.mkdtemp(prefix="docqa-bench-remote-"))  # kept: the servers' logs are in it
    print(f"logs in {tmp}", flush=True)
    if True:
        servers = _servers(2, tmp)
        try:
            for r in range(rounds):
                order = ("docqa", "direct") if r % 2 == 0 or not prompts else ("direct", "docqa")
                for side in order:
                    if side == "docqa":
                        cold, *warm = _docqa_pair(tmp / f"docqa{r}", servers[0], text, prompts)
                    else:
                        cold, *warm = _direct_pair(servers[0], prompts)
                    cells[f"{side}_cold"].append(cold)
                    cells[f"{side}_warm"].extend(warm)
            batch = {"one_server": _batch(tmp / "batch1", servers[:1], text),
                     "two_servers": _batch(tmp / "batch2", servers, text)}
        finally:
            for s in servers:
                s.stop()
    med = {k: {m: round(statistics.median(c[m] for c in v), 3) for m in ("ttft_s", "total_s", "prompt_s")}
           for k, v in cells.items()}
    ratio = {phase: {m: round(med[f"direct_{phase}"][m] / med[f"docqa_{phase}"][m], 3) for m in ("ttft_s", "total_s")}
             for phase in ("cold", "warm")}
    write("remote", {
        "model": "SmolLM2-135M-Instruct Q4_1 (embedded)", "llama_server": {"threads": 1, "slots": 1, "ctx": CTX},
        "max_tokens": MAX_TOKENS, "rounds": rounds, "prompt_tokens": [len(p) for p in prompts], "medians": med,
        "ratio_direct_over_docqa": ratio,
        "first_token_beyond_prompt_ms": {  # what the client waits for besides the server's reading, warm
            side: round(1000 * statistics.median(c["ttft_s"] - c["prompt_s"] for c in cells[f"{side}_warm"]), 1)
            for side in ("docqa", "direct")},
        "warm_prompt_over_cold_prompt_docqa": round(med["docqa_warm"]["prompt_s"] / med["docqa_cold"]["prompt_s"], 4),
        "batch_10_questions": batch,
        "batch_speedup_two_over_one": round(batch["one_server"]["wall_s"] / batch["two_servers"]["wall_s"], 2),
        "targets": {"ratio_direct_over_docqa": "≥ 0.95", "warm_prompt_over_cold_prompt_docqa": "≤ 0.05"},
        "note": "both llama-servers share this machine's 2 cores (and other work); on separate hosts the batch "
                "speed-up would not be capped by that",
        "runs": cells,
    })
