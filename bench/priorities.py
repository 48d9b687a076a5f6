"""Read-ahead and priority classes, measured (issue 15); each writes bench/results/<name>.json.

    python -m bench.run readahead   # TTFT for a ~4K-token lease asked 20 s after the session opens:
                                    # docqa with read-ahead, docqa without, llama-server (same model, threads)
    python -m bench.run priority    # an interactive question's TTFT while a 20-item batch runs vs an idle model

readahead: every side starts fresh (a new server, an empty data folder), uploads the lease, opens a
session (llama-server has none: it reads nothing before the question), waits `DELAY_S`, then asks one
question, 16 answer tokens, greedy, streamed; the time to the first token is taken by the client.
docqa without read-ahead is `DOCQA_READ_AHEAD=false`. Target: with read-ahead ≤ 0.2× llama-server.
Reading is bounded by the machine: in 20 s at r tokens/s read-ahead gets through 20·r of the lease's
N tokens, and the question still has (N − 20·r)/r seconds to read. So the run records that bound, and
asks read-ahead once more after a delay long enough for the reading to end (the cold prefill time
docqa itself measured, plus 15 %), as on a machine reading N/20 tokens/s or faster.

priority: one docqa server; a 20-question batch over the lease (its items yield to people at their next
slice or token); interactive questions over small other documents (each read cold, ~300 tokens)
asked while the batch runs, against the same kind of question asked with the model idle. Target ≤ 1.5×.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.llama_server import MAX_TOKENS, LlamaServer, _stream, model_ready
from bench.sidebyside import BATCH_QUESTIONS, document_text

DELAY_S = 20.0
BODY = {"max_tokens": MAX_TOKENS, "sampling": {"temperature": 0, "seed": 1}}


def _server(data: Path, **env: str) -> Any:
    from tests.browser import Server

    return Server(data, env={"DOCQA_RATE_UPLOADS": "0", "DOCQA_RATE_QUESTIONS": "0", "DOCQA_SEED": "1", **env})


def _docqa_after_delay(tmp: Path, text: str, read_ahead: bool, delay_s: float = DELAY_S) -> dict[str, Any]:
    server = model_ready(_server(tmp, DOCQA_READ_AHEAD="true" if read_ahead else "false").start())
    try:
        with httpx.Client(base_url=server.url, timeout=600) as http:
            doc = http.post("/api/documents", files={"file": ("lease.txt", text.encode(), "text/plain")}).json()
            session = http.post("/api/sessions", json={"document_ids": [doc["id"]]}).json()
            time.sleep(delay_s)
            health = http.get("/api/health").json()["details"]["read_ahead"]
            ttft, total, last = _stream(http, f"/api/sessions/{session['id']}/questions",
                                        {**BODY, "question": BATCH_QUESTIONS[0]}, "docqa")
            import json

            timings = json.loads(last).get("timings", {}) if last else {}
            return {"ttft_s": ttft, "total_s": total, "prompt_tokens": session["plan"]["prompt_tokens"],
                    "delay_s": delay_s, "prefill_s": timings.get("prefill_s"),
                    "prefill_tokens": timings.get("prefill_tokens"),
                    "prefix_source": timings.get("prefix_source"), "cached_tokens": timings.get("cached_tokens"),
                    "read_ahead_tokens": timings.get("read_ahead_tokens"), "read_ahead_at_question": health}
    finally:
        server.stop()


def _server_after_delay(tmp: Path, text: str, n_ctx: int) -> dict[str, Any]:
    from bench.run import _settings
    from docqa.engine.local import cpu
    from docqa.engine.local.runtime import default_threads
    from docqa.engine.models import ModelRegistry

    settings = _settings(tmp / "s")
    spec = ModelRegistry(settings).get(None)
    extra, _ = cpu.use_extra_buffers(settings.extra_buffers)
    server = LlamaServer(spec.path, n_ctx, settings.n_threads or default_threads(), not extra,
                         tmp / "llama-server.log").start()
    try:
        time.sleep(DELAY_S)  # the person reads the page and types; llama-server reads nothing meanwhile
        result = server.ask(text, BATCH_QUESTIONS[0])
        return {**result, "prompt_tokens": result["prompt_n"] + result["cache_n"]}
    finally:
        server.stop()


def bench_readahead(rounds: int = 1) -> None:
    from bench.run import machine, write

    text = document_text()
    runs: dict[str, list[dict[str, Any]]] = {"docqa_read_ahead": [], "docqa_without": [], "llama_server": [],
                                             "docqa_read_ahead_done": []}
    bounds = []
    for r in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            runs["docqa_read_ahead"].append(_docqa_after_delay(base / "ra", text, True))
            without = _docqa_after_delay(base / "none", text, False)
            runs["docqa_without"].append(without)
            runs["llama_server"].append(_server_after_delay(base, text, 6144))
            rate = without["prefill_tokens"] / without["prefill_s"]  # this machine's reading, tokens/s
            bounds.append(max(0.0, without["prefill_tokens"] - DELAY_S * rate) / rate)
            done = _docqa_after_delay(base / "done", text, True, round(without["prefill_s"] * 1.15, 1))
            runs["docqa_read_ahead_done"].append(done)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]['ttft_s']:.2f} s" for k, v in runs.items()))
    med = {k: round(statistics.median(x["ttft_s"] for x in v), 3) for k, v in runs.items()}
    write("readahead", {
        "machine": machine(), "delay_s": DELAY_S, "max_tokens": MAX_TOKENS, "rounds": rounds,
        "ttft_s_median": med,
        "ratio_read_ahead_over_llama_server": round(med["docqa_read_ahead"] / med["llama_server"], 3),
        "ratio_without_over_llama_server": round(med["docqa_without"] / med["llama_server"], 3),
        "reading_bound_s": round(statistics.median(bounds), 3),
        "reading_bound_note": "seconds of the lease left to read 20 s after the session opened, at the rate docqa "
                              "read it without read-ahead: no read-ahead at this speed can answer sooner",
        "ratio_read_ahead_done_over_llama_server": round(med["docqa_read_ahead_done"] / med["llama_server"], 3),
        "read_ahead_done_delay_s": [x["delay_s"] for x in runs["docqa_read_ahead_done"]],
        "target": "read-ahead ≤ 0.2× llama-server", "runs": runs,
    })


def _small(n: int) -> str:
    # the same number of tokens in every set: the idle and busy questions read alike
    return "".join(f"Note {i:02d} of set {n:02d}: the shed key hangs on hook {n * 7 + i + 100}. Bring gloves.\n"
                   for i in range(24))


def bench_priority(items: int = 20, asks: int = 3) -> None:
    from bench.run import machine, write

    text = document_text()
    with tempfile.TemporaryDirectory() as tmp:
        server = _server(Path(tmp), DOCQA_READ_AHEAD="false", DOCQA_QUEUE_SIZE="8").start()
        try:
            with httpx.Client(base_url=server.url, timeout=600) as http:
                lease = http.post("/api/documents", files={"file": ("lease.txt", text.encode(), "text/plain")}).json()
                sessions = []
                for n in range(2 * asks + 1):
                    doc = http.post("/api/documents",
                                    files={"file": (f"notes{n}.txt", _small(n).encode(), "text/plain")}).json()
                    sessions.append(http.post("/api/sessions", json={"document_ids": [doc["id"]]}).json()["id"])

                def ask(sid: str) -> dict[str, Any]:
                    import json

                    ttft, total, last = _stream(http, f"/api/sessions/{sid}/questions",
                                                {**BODY, "question": "Which hook holds the shed key?"}, "docqa")
                    return {"ttft_s": ttft, "total_s": total, "timings": json.loads(last).get("timings", {})}

                ask(sessions[-1])  # the runner loaded: neither side pays for starting it
                idle = [ask(sessions[i]) for i in range(asks)]
                questions = (BATCH_QUESTIONS * 2)[:items]
                batch = http.post("/api/batches", json={"document_ids": [lease["id"]], "questions": questions,
                                                        "max_tokens": MAX_TOKENS * 2, **{"sampling": BODY["sampling"]}})
                batch_id = batch.json()["id"]
                busy = []
                for i in range(asks):
                    time.sleep(4.0 if i == 0 else 2.0)  # the first while the lease is read, later while items answer
                    state = http.get(f"/api/batches/{batch_id}").json()
                    result = ask(sessions[asks + i])
                    result["batch_done_before"] = state["done"]
                    busy.append(result)
                while (b := http.get(f"/api/batches/{batch_id}").json())["status"] not in ("done", "failed"):
                    time.sleep(1.0)
                yields = [r["timings"].get("yields", 0) for r in b["results"]]
        finally:
            server.stop()
    idle_m = statistics.median(r["ttft_s"] for r in idle)
    busy_m = statistics.median(r["ttft_s"] for r in busy)
    write("priority", {
        "machine": machine(), "batch_items": items, "max_tokens": MAX_TOKENS,
        "ttft_s_median": {"idle": round(idle_m, 3), "during_batch": round(busy_m, 3)},
        "ratio_during_batch_over_idle": round(busy_m / idle_m, 3), "target": "≤ 1.5×",
        "batch_status": b["status"], "batch_item_yields": yields, "idle": idle, "during_batch": busy,
    })
