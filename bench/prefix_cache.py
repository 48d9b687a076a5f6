"""A warm follow-up question over a ~14K-token document set on the local model: how often the tokenizer
runs and how long until the first token, with this checkout against another (`before`, e.g. main).

Each round starts a fresh process per checkout (alternating which goes first) and asks a first
question (its prefix read once, then loaded from the snapshot: both checkouts share one data
folder, as their state keys are the same), then a follow-up on the same documents, which is what is
measured: llama.cpp tokenizer calls and bytes tokenized (the vocabulary's `tokenize`, counted by
wrapping it), and the time from `Engine.answer` to the first streamed token. Ratios are within one
run; absolute seconds on a shared machine are noise.

    python -m bench.prefix_cache --before /tmp/seam-before --rounds 3 [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LICENSES = ["GPL-3", "Apache-2.0", "MPL-2.0"]  # Debian's /usr/share/common-licenses: ~14K SmolLM2 tokens
QUESTIONS = ["Which license lets a contributor grant a patent license?",
             "What does the GPL say about installation information for user products?"]



def _counted(data_dir: str) -> tuple[Any, Any, dict[str, int]]:
    """(In the child) the default model's spec, an engine over `data_dir`, and the counts of its tokenizer's calls
    and bytes, which every call adds to."""
    from docqa.engine.engine import Engine
    from docqa.engine.models import ModelRegistry
    from docqa.settings import Settings

    settings = Settings(data_dir=Path(data_dir), seed=1, read_ahead=False, preload=False, search_lines=0)
    registry = ModelRegistry(settings)
    spec = registry.get(None)
    vocab = spec.vocab()  # type: ignore[attr-defined]
    calls = {"n": 0, "chars": 0}
    original = vocab.tokenize

    def counted(text: bytes, *a: Any, **kw: Any) -> Any:
        calls["n"] += 1
        calls["chars"] += len(text)
        return original(text, *a, **kw)

    vocab.tokenize = counted
    return spec, Engine(settings, registry), calls

def _licences() -> list[Any]:
    from docqa.engine.sources import Document, Section

    sources = []
    for i, name in enumerate(LICENSES):
        text = Path("/usr/share/common-licenses", name).read_text()
        lines = text.count("\n") + 1
        sources.append((Document(id=f"lic-{i}", filename=name, sha256=name),
                        [Section(ordinal=0, text=text, path=name, line_start=1, line_end=lines, id=i)]))
    return sources


def prompt_only(data_dir: str, repeats: int = 5) -> dict[str, Any]:
    """In the child, without running the model: what a follow-up costs before its job reaches the runner
    (rendering and tokenizing its prompt, the engine's `_tokens` as `Engine.answer` calls it), after a
    first question over the same documents; tokenizer calls counted as in `one`."""
    from docqa.engine import prompts

    spec, engine, calls = _counted(data_dir)
    sources = _licences()
    body = engine.render_documents(sources)
    prefix, _ = engine._tokens(spec, prompts.INSTRUCTIONS, body, QUESTIONS[0], None)  # the first question
    times = []
    for _ in range(repeats):
        calls.update(n=0, chars=0)
        t = time.perf_counter()
        engine._tokens(spec, prompts.INSTRUCTIONS, engine.render_documents(sources), QUESTIONS[1], None)
        times.append(time.perf_counter() - t)
    engine.close()
    return {"prefix_tokens": len(prefix), "tokenizer_calls": calls["n"], "tokenized_bytes": calls["chars"],
            "prompt_s": round(statistics.median(times), 4)}


def one(data_dir: str) -> dict[str, Any]:
    """In the child: a first question, then the measured follow-up."""
    from docqa.engine.engine import AskOptions

    spec, engine, calls = _counted(data_dir)
    sources = _licences()
    try:
        plan = engine.plan(spec, sources, "whole")
        opts = AskOptions(max_tokens=8, sampling={"temperature": 0, "seed": 1})
        engine.answer(spec, plan, sources, QUESTIONS[0], opts)
        calls.update(n=0, chars=0)
        first: list[float] = []
        t0 = time.perf_counter()
        answer = engine.answer(spec, plan, sources, QUESTIONS[1], opts,
                               on_event=lambda kind, _p: first.append(time.perf_counter()) if kind == "token" else None)
        return {"tokenizer_calls": calls["n"], "tokenized_bytes": calls["chars"],
                "first_token_s": round((first[0] if first else time.perf_counter()) - t0, 4),
                "prefix_source": answer.timings["prefix_source"], "prompt_tokens": plan.prompt_tokens}
    finally:
        engine.close()


def pipe_cost(n_tokens: int = 14_000, repeats: int = 50) -> dict[str, Any]:
    """What sending a question's whole prefix to the runner costs (pickled through the pipe, both ways)
    and hashing it into its state key: the question is whether the runner should keep it instead."""
    import pickle
    import random

    from docqa.engine.local.state_cache import ContextConfig, state_key
    from docqa.engine.local.work import Work
    from docqa.engine.sampling import Sampling

    config = ContextConfig(16384, "f16", "f16", False, 2.0, 8192, 512, 512)
    prefix = [random.randrange(49152) for _ in range(n_tokens)]
    work = Work(config=config, prefix=prefix, suffix=[1] * 30, state_key="k", max_tokens=64, sampling=Sampling())
    pickled, keyed = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        data = pickle.dumps(("job", 1, work), protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(data)
        pickled.append(time.perf_counter() - t)
        t = time.perf_counter()
        state_key("x" * 64, config, prefix)
        keyed.append(time.perf_counter() - t)
    return {"prefix_tokens": n_tokens, "pickled_bytes": len(data),
            "pickle_round_trip_ms_median": round(statistics.median(pickled) * 1000, 3),
            "state_key_ms_median": round(statistics.median(keyed) * 1000, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="a checkout of the code to compare with (its repository root)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data-dir", help="a data folder both sides share (kept: its snapshot spares the next run "
                                       "the cold read); default: a temporary one")
    ap.add_argument("--prompt-only", action="store_true",
                    help="measure only what a follow-up costs before its job reaches the runner (no model run)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(prompt_only(args.child) if args.prompt_only else one(args.child)))
        return
    here = Path(__file__).resolve().parents[1]
    trees = {"before": Path(args.before).resolve(), "after": here}
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(args.data_dir or tmp)
        for r in range(args.rounds):
            for side in (("before", "after") if r % 2 == 0 else ("after", "before")):
                env = {**os.environ, "PYTHONPATH": str(trees[side])}
                out = subprocess.run([sys.executable, str(here / "bench" / "prefix_cache.py"), "--before", ".",
                                      *(["--prompt-only"] if args.prompt_only else []),
                                      "--child", str(data_dir)], env=env, cwd=trees[side],
                                     capture_output=True, text=True, check=True)
                runs[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(side, runs[side][-1], flush=True)
    sys.path.insert(0, str(here))
    from bench.run import write

    if args.prompt_only:
        ratios = [a["prompt_s"] / b["prompt_s"] for a, b in zip(runs["after"], runs["before"], strict=True)]
        write("prefix_cache_prompt", {
            "what": "a follow-up's prompt (render + tokenize, Engine._tokens) over GPL-3 + Apache-2.0 + MPL-2.0 "
                    "after a "
                    "first question, embedded SmolLM2's vocabulary; no model run; this checkout (after) against "
                    "--before, alternating rounds",
            "runs": runs,
            "prompt_s_median": {s: statistics.median(x["prompt_s"] for x in v) for s, v in runs.items()},
            "prompt_ratio_after_vs_before_per_round": [round(x, 4) for x in ratios],
            "pipe": pipe_cost(),
        })
        return
    med = {s: statistics.median(x["first_token_s"] for x in v) for s, v in runs.items()}
    ratios = [a["first_token_s"] / b["first_token_s"] for a, b in zip(runs["after"], runs["before"], strict=True)]
    write("prefix_cache", {
        "what": "warm follow-up over GPL-3 + Apache-2.0 + MPL-2.0 (whole mode), embedded SmolLM2; "
                "tokenizer calls and time to first token, this checkout (after) against --before",
        "runs": runs,
        "tokenizer_calls": {s: [x["tokenizer_calls"] for x in v] for s, v in runs.items()},
        "tokenized_bytes": {s: [x["tokenized_bytes"] for x in v] for s, v in runs.items()},
        "first_token_s_median": med,
        "first_token_ratio_after_vs_before_per_round": [round(x, 3) for x in ratios],
        "first_token_ratio_median": round(statistics.median(ratios), 3),
        "pipe": pipe_cost(),
    })


if __name__ == "__main__":
    main()
