"""Flash attention on or off, on this CPU: what `DOCQA_FLASH_ATTN` unset (auto) is chosen by.

    python -m bench.run flash       # writes bench/results/flash.json (~6 min on 2 cores)
    python -m bench.flash quality   # adds answer quality with it off vs the stored run with it on (~5 min)

The embedded SmolLM2, the runner's own context set-up (`new_llama`, extra buffer types as docqa chooses
them here) and prefill loop, 2 threads, n_batch = n_ubatch = 512, f16 KV. Per depth (a ~3,800- and a
~7,900-token lease, contexts of 6,144 and 8,192) and per setting, one after the other:
- read: the document read from empty, in 512-token slices (tokens/s);
- question: a 17-token question evaluated after it, its cells dropped between tries (median of 3, s);
- answer: 16 greedy tokens generated after the question (s).
The question and the answer are what a warm follow-up costs; reading is what a cold one costs.

`quality`: flash attention changes the arithmetic's rounding, so a tiny model's greedy answer can flip
where two tokens nearly tie. It answers bench/quality.py's 1K whole-mode greedy cells (all six tasks,
seeds 1-3, the same generated documents) with flash attention off and compares them, answer by answer,
with those stored in bench/results/quality.json, which were measured with it on.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

QUESTION = "\nQuestion: Who is the landlord of the flat?<|im_end|>\n<|im_start|>assistant\n"
DEPTHS = ((3800, 6144, 1), (7900, 8192, 2))  # (tokens, n_ctx, copies of the lease)


def _one(spec: Any, extra: bool, threads: int, tokens: int, n_ctx: int, copies: int, flash: bool) -> dict[str, Any]:
    import llama_cpp

    from bench.sidebyside import document_text
    from docqa.engine.local.runner import new_llama, prefill

    llm = new_llama(dict(model_path=str(spec.path), n_ctx=n_ctx, n_batch=512, n_ubatch=512, flash_attn=flash,
                         n_threads=threads, n_threads_batch=threads, verbose=False), extra_buffers=extra)
    try:
        doc = llm.tokenize(document_text().encode() * copies, add_bos=False, special=False)[:tokens]
        question = llm.tokenize(QUESTION.encode(), add_bos=False, special=True)
        t0 = time.perf_counter()
        prefill(llm, doc, 0, 512, None)
        read_s = time.perf_counter() - t0
        mem = llama_cpp.llama_get_memory(llm.ctx)

        def back() -> None:
            llama_cpp.llama_memory_seq_rm(mem, 0, len(doc), -1)
            llm.n_tokens = len(doc)

        tries = []
        for _ in range(3):
            back()
            t = time.perf_counter()
            llm.eval(question)
            tries.append(time.perf_counter() - t)
        back()
        first = 0.0
        tokens = llm.generate(doc + question, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True)
        for n, _ in enumerate(tokens, start=1):  # the first token ends the question; 16 more are the answer
            if n == 1:
                first = time.perf_counter()
            if n == 17:
                break
        answer_s = time.perf_counter() - first
    finally:
        llm.close()
    return {"depth": len(doc), "n_ctx": n_ctx, "flash_attn": flash, "read_tokens_per_s": round(len(doc) / read_s, 1),
            "question_tokens": len(question), "question_s": round(statistics.median(tries), 3),
            "question_tries_s": [round(t, 3) for t in tries], "answer_16_tokens_s": round(answer_s, 3)}


def bench_flash() -> None:
    from bench.run import _settings, write
    from docqa.engine.local import cpu
    from docqa.engine.local.runtime import default_threads
    from docqa.engine.models import ModelRegistry

    settings = _settings(Path(tempfile.mkdtemp()))
    spec = ModelRegistry(settings).get(None)
    extra, why = cpu.use_extra_buffers(settings.extra_buffers)
    threads = settings.n_threads or default_threads()
    rows = []
    for tokens, n_ctx, copies in DEPTHS:
        for flash in (True, False):
            rows.append(_one(spec, extra, threads, tokens, n_ctx, copies, flash))
            print(rows[-1], file=sys.stderr, flush=True)
    ratios = {}
    for on, off in zip(rows[::2], rows[1::2], strict=True):
        ratios[f"d{on['depth']}"] = {
            "read_off_over_on": round(off["read_tokens_per_s"] / on["read_tokens_per_s"], 3),
            "question_on_over_off": round(on["question_s"] / off["question_s"], 2),
            "answer_on_over_off": round(on["answer_16_tokens_s"] / off["answer_16_tokens_s"], 2),
        }
    write("flash", {"model": spec.path.name, "threads": threads, "extra_buffers": extra, "extra_buffers_reason": why,
                    "rows": rows, "ratios": ratios,
                    "reading": "read_off_over_on < 1: reading is slower without flash attention; "
                               "*_on_over_off > 1: a question or an answer is slower with it"})


def bench_flash_quality() -> None:
    import json

    from bench import quality
    from bench.run import RESULTS
    from docqa.engine.engine import Engine
    from docqa.engine.models import ModelRegistry
    from docqa.settings import Settings

    stored = {(a["seed"], a["task"]): a for a in json.loads((RESULTS / "quality.json").read_text())["answers"]
              if (a["length"], a["mode"], a["sampling"]) == (1024, "whole", "greedy")}
    tmp = Path(tempfile.mkdtemp())
    settings = Settings(data_dir=tmp, seed=1, answer_tokens=quality.MAX_TOKENS, question_tokens=64, history_tokens=0,
                        n_threads=quality.THREADS, flash_attn=False, read_ahead=False, preload=False)
    registry = ModelRegistry(settings)
    engine = Engine(settings, registry)
    spec = registry.get(None)
    rows = []
    try:
        for seed in (1, 2, 3):
            for cell in quality.run_cell(engine, spec, 1024, "whole", ["greedy"], seed):
                for r in cell.results:
                    on = stored.get((seed, r["task"]))
                    rows.append({"seed": seed, "task": r["task"], "correct_off": r["correct"],
                                 "correct_on": on["correct"] if on else None, "same_answer": bool(on) and
                                 on["answer"] == r["answer"], "answer_off": r["answer"],
                                 "answer_on": on["answer"] if on else None})
    finally:
        engine.close()
    both = [r for r in rows if r["correct_on"] is not None]
    path = RESULTS / "flash.json"
    data = json.loads(path.read_text())
    data["quality_1k_greedy"] = {
        "answers": len(both), "same_answer": sum(r["same_answer"] for r in both),
        "accuracy_off": round(sum(r["correct_off"] for r in both) / max(1, len(both)), 3),
        "accuracy_on_stored": round(sum(r["correct_on"] for r in both) / max(1, len(both)), 3),
        "rows": rows,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps({k: v for k, v in data["quality_1k_greedy"].items() if k != "rows"}))


if __name__ == "__main__":
    if sys.argv[1:] == ["quality"]:
        bench_flash_quality()
    else:
        bench_flash()
