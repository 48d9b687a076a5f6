"""Answer quality: a generated, seeded suite in the spirit of RULER, over the real model.

    python -m bench.quality           # the reduced grid (main()); bench/results/quality.json + quality.png
    python -m bench.quality --full    # every length x every sampling x whole and chunked (hours on 2 cores)
    python -m bench.quality --smoke   # one question whole, one chunked: does it run
    python -m bench.quality --grid targets          # the issue's target cells, 3 seeds each (quality_targets.json)
    python -m bench.quality --grid targets --plain  # the same, the model alone (quality_targets_plain.json)

Per (length, seed) one contract-like haystack is generated (filler clauses, some with numbers) and
the needles of every task are put in it at seeded depths, so one prefix serves all the cell's
questions (read once, then reused from the KV cache):
- single: "The pass key is 71432." -- "What is the pass key?"
- multi_key: four "The special magic number for <word> is <n>." -- the number of one word
- multi_value: three "One of the special magic numbers for <word> is <n>." -- all three (partial credit)
- number: a rent clause "... monthly rent of EUR 4,500 ..." -- "What is the monthly rent?"
- date: "This agreement was signed on 1 March 2025 ..." -- "On what date was the agreement signed?"
- absent: a question about something the document lacks -- right when the answer says so.
Scores: accuracy per task x length x mode x sampling; grounding precision (a claim marked quoted
or supported whose number is a needle's must be grounded on that needle; one with a number the
document lacks must not be grounded at all) and recall (claims stating a needle's value that are
grounded); unsupported-claim rate; median answer length (tokens); the rate of answers that copy
document text unrelated to the question (a grounded claim whose passage is no needle of its task).
Answers are docqa's, as a user gets them: with the lines its search finds shown before the question
(DOCQA_SEARCH_LINES) and unsupported answers withheld (DOCQA_UNSUPPORTED_ANSWERS). Each answer also
keeps the model's own text (`draft`) where docqa withheld it, scored as `correct_draft`; the summary
gives both accuracies (`accuracy`, `accuracy_model_alone`) and the rate of answers withheld.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.grounding_set import FILLER, MONTHS
from bench.run import RESULTS, write

SAMPLINGS: dict[str, dict[str, float | str]] = {
    "greedy": {"preset": "greedy"},
    "t0.2": {"temperature": 0.2, "top_p": 0.95, "top_k": 40, "min_p": 0.05},
    "qwen-instruct": {"preset": "instruct"},  # the chat preset every model used before (temperature 0.7)
    # issue #22: what the penalties against loops do to the pass key and the rest (--grid penalties)
    "greedy+presence": {"preset": "greedy", "presence_penalty": 1.0},
    "greedy+dry": {"preset": "greedy"},  # with llama.cpp's DRY sampler added (dry_sampler(), bench only)
}
DRY = {"multiplier": 0.8, "base": 1.75, "allowed_length": 2, "penalty_last_n": -1,
       "seq_breakers": ["\n", ":", "\"", "*"]}  # llama.cpp's llama-server defaults, with the multiplier on


def dry_sampler(on: bool) -> None:
    """Add llama.cpp's DRY sampler ("don't repeat yourself") to every generation of this process, or stop.

    llama-cpp-python has `LlamaSampler.add_dry` (llama_sampler_init_dry) but `Llama.generate` builds its
    chain without it, so the bench wraps `Llama._init_sampler`: right after the penalties (before the
    greedy pick or the temperature) it adds DRY with llama-server's defaults and multiplier 0.8. The
    runner generates in this process, so its answers get it."""
    from llama_cpp import _internals as internals
    from llama_cpp import llama as llama_mod

    cls = llama_mod.Llama
    original = getattr(cls, "_docqa_plain_init_sampler", None)
    if original is None:
        original = cls._init_sampler
        cls._docqa_plain_init_sampler = original  # type: ignore[attr-defined]
    if not on:
        cls._init_sampler = original  # type: ignore[method-assign]
        return

    def with_dry(self: Any, *args: Any, **kwargs: Any) -> Any:
        plain = internals.LlamaSampler.add_penalties
        model = self._model

        def penalties_then_dry(sampler: Any, *a: Any, **k: Any) -> None:
            plain(sampler, *a, **k)
            sampler.add_dry(model, DRY["multiplier"], DRY["base"], DRY["allowed_length"], DRY["penalty_last_n"],
                            DRY["seq_breakers"])

        internals.LlamaSampler.add_penalties = penalties_then_dry  # type: ignore[method-assign]
        try:
            return original(self, *args, **kwargs)
        finally:
            internals.LlamaSampler.add_penalties = plain  # type: ignore[method-assign]

    cls._init_sampler = with_dry  # type: ignore[method-assign]
MAX_TOKENS = 64  # answers are a sentence or two; a longer one is rambling, and is scored as what it says
THREADS = 2  # run it with the machine to itself (under other load, 1 thread waits for no other)
CHUNK_CONTEXT = 2048  # small, so chunked mode has several chunks at these lengths
NAME = "quality"  # the results file: quality[_targets][_plain].json
WORDS = ["amber", "birch", "cobalt", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "juniper", "kelp",
         "lumen", "maple", "nimbus", "onyx", "pepper", "quartz", "raven", "saffron", "tundra"]
ABSENT = [("Who is the guarantor of this agreement?", None),
          ("What is the name of the ship that carries the goods?", None),
          ("What is the pass code of the blue vault?", None)]
CLAUSE = ("Clause {a}.{b}: {s}", "Section {a}({b}) applies to the services described in Schedule {c}.",
          "Under clause {a}, invoices are issued within {c} business days of delivery.")


@dataclass
class Task:
    name: str
    question: str
    needles: list[str]  # the sentences that answer it
    values: list[str]  # what a right answer holds (all, for multi_value)


@dataclass
class Cell:
    length: int
    mode: str
    sampling: str
    seed: int
    results: list[dict[str, Any]] = field(default_factory=list)


def make_tasks(rng: random.Random) -> list[Task]:
    key = str(rng.randint(10000, 99999))
    words = rng.sample(WORDS, 5)
    mk = {w: str(rng.randint(100000, 999999)) for w in words[:4]}
    target = rng.choice(words[:4])
    mv_word = words[4]
    mv = [str(rng.randint(100000, 999999)) for _ in range(3)]
    rent = rng.choice([18, 24, 32, 45, 52, 67]) * 100 + rng.choice([0, 50])
    y, m, d = rng.randint(2019, 2030), rng.randint(1, 12), rng.randint(2, 28)
    absent = rng.choice(ABSENT)[0]
    return [
        Task("single", "What is the pass key?", [f"The pass key is {key}."], [key]),
        Task("multi_key", f"What is the special magic number for {target}?",
             [f"The special magic number for {w} is {n}." for w, n in mk.items()], [mk[target]]),
        Task("multi_value", f"What are all the special magic numbers for {mv_word}?",
             [f"One of the special magic numbers for {mv_word} is {n}." for n in mv], mv),
        Task("number", "What is the monthly rent?",
             [f"The Tenant shall pay a monthly rent of EUR {rent:,} on the first day of each month."], [str(rent)]),
        Task("date", "On what date was the agreement signed?",
             [f"This agreement was signed on {d} {MONTHS[m - 1]} {y} by both parties."], [f"{y}-{m:02d}-{d:02d}"]),
        Task("absent", absent, [], []),
    ]


def haystack(rng: random.Random, tasks: list[Task], n_tokens: int, count: Any) -> str:
    """Filler clauses up to about n_tokens model tokens, with every task's needles at seeded depths."""
    lines: list[str] = []
    total = 0
    while total < n_tokens:
        t = rng.choice(CLAUSE).format(a=rng.randint(2, 40), b=rng.randint(1, 9), c=rng.randint(2, 30),
                                      s=rng.choice(FILLER))
        lines.append(t)
        total += count(t + "\n")
    needles = [n for t in tasks for n in t.needles]
    for n in needles:
        lines.insert(rng.randint(0, len(lines)), n)
    while total > n_tokens and len(lines) > len(needles) + 1:  # make room for the needles
        i = rng.randrange(len(lines))
        if lines[i] not in needles:
            total -= count(lines.pop(i) + "\n")
    return "\n".join(lines) + "\n"


def sources_of(text: str, name: str) -> Any:
    from docqa.ingest.text import split_lines
    from docqa.store.models import Document, Section

    doc = Document(id=name, filename="contract.txt", kind="text", sha256=name)
    secs = [Section(id=i, ordinal=i, path=None, line_start=s.line_start, line_end=s.line_end, text=s.text)
            for i, s in enumerate(split_lines(text, 2000))]
    return [(doc, secs)]


def score(task: Task, answer: Any, all_needles: list[str]) -> dict[str, Any]:
    from docqa.engine import grounding
    from docqa.engine.loops import max_repeats

    text = answer.answer

    def right(text: str) -> float:
        f = grounding.facts(text)
        found = [v for v in task.values if v in (f.dates if task.name == "date" else f.numbers) or v in text]
        if task.name == "absent":
            return 1.0 if grounding.abstains(text) or not text.strip() else 0.0
        return len(found) / len(task.values)

    correct = right(text)
    # the model's own answer, before docqa withheld it as unsupported (DOCQA_UNSUPPORTED_ANSWERS)
    correct_draft = right(answer.draft) if answer.draft is not None else correct
    claims = answer.claims
    values = {v for t_vals in [task.values] for v in t_vals}
    precise = grounded_numeric = recall_hit = recall_all = 0
    off_topic = False
    for c in claims:
        cf = grounding.facts(grounding._MARKER.sub(" ", c["text"]))
        nums = set(cf.numbers) | set(cf.dates)
        grounded = c["status"] in ("quoted", "supported")
        passage = (c.get("passage") or {}).get("text", "")
        if nums & values:
            recall_all += 1
            recall_hit += grounded
        if grounded and nums:
            grounded_numeric += 1
            ok = all(n in grounding.facts(passage).numbers or n in grounding.facts(passage).dates
                     or n in passage for n in nums)
            needle_values = nums & {v for n in all_needles for v in _values_in(n)}
            if needle_values:
                ok = ok and any(n in passage for n in all_needles if _values_in(n) & needle_values)
            precise += ok
        if grounded and not any(n in passage or passage in n for n in task.needles):
            off_topic = True
    counts = grounding.summary([grounding.Claim(**c) for c in claims])
    return {
        "task": task.name, "question": task.question, "answer": text, "correct": correct,
        "draft": answer.draft, "correct_draft": correct_draft,
        "tokens": answer.timings.get("generated_tokens", 0), "claims": counts,
        "numeric_grounded": grounded_numeric, "numeric_precise": precise,
        "recall_claims": recall_all, "recall_grounded": recall_hit, "off_topic_copy": off_topic,
        "cached_tokens": answer.timings.get("cached_tokens", 0),
        "stop_reason": getattr(answer, "stop_reason", None),
        "max_repeats": max_repeats(answer.draft if answer.draft is not None else text),
    }


def _values_in(needle: str) -> set[str]:
    from docqa.engine import grounding

    f = grounding.facts(needle)
    # only values written in the needle itself: facts() also reads number words ("One of the special
    # magic numbers…" holds 1), which made a claim quoting "Section 12(1)" look like a needle's value
    return {v for v in set(f.numbers) | set(f.dates) if v in needle}


def run_cell(engine: Any, spec: Any, length: int, mode: str, samplings: list[str], seed: int,
             only: list[str] | None = None, done: dict[tuple[Any, ...], Cell] | None = None) -> list[Cell]:
    from docqa.engine.engine import AskOptions

    rng = random.Random(seed * 1000 + length)
    tasks = make_tasks(rng)
    text = haystack(rng, tasks, length, lambda t: engine.count(spec, t))
    sources = sources_of(text, f"q{seed}-{length}")
    plan = engine.plan(spec, sources, mode)
    needles = [n for t in tasks for n in t.needles]
    cells = []
    done = done or {}
    for name in samplings:
        cell = done.pop((length, mode, name, seed), None) or Cell(length, mode, name, seed)
        for task in tasks:
            if (only and task.name not in only) or any(r["task"] == task.name for r in cell.results):
                continue
            opts = AskOptions(max_tokens=MAX_TOKENS, sampling={**SAMPLINGS[name], "seed": seed}, history=False)
            t0 = time.perf_counter()
            dry_sampler(name.endswith("+dry"))
            try:
                answer = engine.answer(spec, plan, sources, task.question, opts)
            finally:
                dry_sampler(False)
            r = score(task, answer, needles)
            r["seconds"] = round(time.perf_counter() - t0, 2)
            r["plan"] = {"mode": plan.mode, "n_ctx": plan.n_ctx, "yarn": plan.kv.yarn_factor, "chunks": plan.n_chunks,
                         "prompt_tokens": plan.prompt_tokens}
            cell.results.append(r)
            print(f"{length:>6} {mode:8s} {name:14s} seed {seed} {task.name:12s} {r['correct']:.2f} "
                  f"{r['seconds']:6.1f}s  {text_of(r['answer'])}", file=sys.stderr, flush=True)
        cells.append(cell)
    return cells


def text_of(answer: str) -> str:
    return answer.replace("\n", " ")[:90]


def summarize(cells: list[Cell]) -> dict[str, Any]:
    rows: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for c in cells:
        for r in c.results:
            rows.setdefault((c.mode, c.sampling, c.length, r["task"]), []).append(r)
    table = []
    for (mode, sampling, length, task), rs in sorted(rows.items()):
        table.append({"mode": mode, "sampling": sampling, "length": length, "task": task,
                      "accuracy": round(statistics.mean(r["correct"] for r in rs), 3), "n": len(rs)})
    per_sampling: dict[str, Any] = {}
    for (mode, sampling) in sorted({(c.mode, c.sampling) for c in cells}):
        rs = [r for c in cells if (c.mode, c.sampling) == (mode, sampling) for r in c.results]
        checked = sum(r["claims"]["checked"] for r in rs)
        ng = sum(r["numeric_grounded"] for r in rs)
        rc = sum(r["recall_claims"] for r in rs)
        per_sampling[f"{mode}/{sampling}"] = {
            "accuracy": round(statistics.mean(r["correct"] for r in rs), 3),
            "accuracy_model_alone": round(statistics.mean(r.get("correct_draft", r["correct"]) for r in rs), 3),
            "withheld_rate": round(statistics.mean(r.get("draft") is not None for r in rs), 3),
            "accuracy_by_task": {t: round(statistics.mean(r["correct"] for r in rs if r["task"] == t), 3)
                                 for t in sorted({r["task"] for r in rs})},
            "median_answer_tokens": statistics.median(r["tokens"] for r in rs),  # chunked: map steps included
            "median_answer_words": statistics.median(len(r["answer"].split()) for r in rs),
            "unsupported_claim_rate": round(sum(r["claims"]["unsupported"] for r in rs) / checked, 3) if checked
            else 0.0,
            "grounding_precision_numeric": round(sum(r["numeric_precise"] for r in rs) / ng, 3) if ng else None,
            "grounding_recall": round(sum(r["recall_grounded"] for r in rs) / rc, 3) if rc else None,
            "off_topic_copy_rate": round(statistics.mean(r["off_topic_copy"] for r in rs), 3),
            "answers": len(rs),
            "loop_stops": sum(r.get("stop_reason") == "loop" for r in rs),
            "max_sentence_repeats": max((r.get("max_repeats", 0) for r in rs), default=0),
        }
    return {"cells": table, "summary": per_sampling}


def chart(result: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install -e '.[bench]')", file=sys.stderr)
        return
    series: dict[tuple[str, str, str], dict[int, float]] = {}
    for row in result["cells"]:
        series.setdefault((row["mode"], row["sampling"], row["task"]), {})[row["length"]] = row["accuracy"]
    tasks = sorted({k[2] for k in series})
    labels = sorted({f"{m}/{sp}" for m, sp, _ in series})
    colour = {label: f"C{i}" for i, label in enumerate(labels)}  # one colour per series in every panel
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.2), sharey=True)
    for ax, task in zip(axes, tasks, strict=True):
        for (mode, sampling, t), pts in sorted(series.items()):
            if t == task:
                xs = sorted(pts)
                ax.plot(xs, [pts[x] for x in xs], marker="o", label=f"{mode}/{sampling}",
                        color=colour[f"{mode}/{sampling}"])
        ax.set_xscale("log", base=2)
        ax.set_title(task)
        ax.set_xlabel("document tokens")
        ax.set_ylim(-0.05, 1.05)
    axes[0].set_ylabel("accuracy")
    axes[-1].legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{NAME}.png", dpi=110)


def main(argv: list[str]) -> None:
    from docqa.engine.engine import Engine
    from docqa.engine.models import ModelRegistry
    from docqa.settings import Settings

    ap = argparse.ArgumentParser(prog="python -m bench.quality")
    ap.add_argument("--full", action="store_true", help="every length x sampling in both modes")
    ap.add_argument("--seeds", type=int, default=3, help="with --full")
    ap.add_argument("--smoke", action="store_true", help="one question whole, one chunked: does it run")
    ap.add_argument("--resume", action="store_true",
                    help="keep the answers already in bench/results/quality.json and run only the missing ones")
    ap.add_argument("--report", action="store_true",
                    help="recompute the summary and the chart from bench/results/quality.json (a run cut short)")
    ap.add_argument("--plain", action="store_true",
                    help="the model alone, as before docqa's search lines and withholding: DOCQA_SEARCH_LINES=0 and "
                         "DOCQA_UNSUPPORTED_ANSWERS=show (writes bench/results/quality[_targets]_plain.json)")
    ap.add_argument("--grid", choices=["reduced", "targets", "penalties"], default="reduced",
                    help="targets: only the cells of the issue's targets (single needle and not-in-the-document, "
                         "whole mode to 7.7K, chunked at 2K), 3 seeds; penalties: greedy against greedy with a "
                         "presence penalty of 1.0 and with DRY, at 1K (issue #22)")
    args = ap.parse_args(argv)
    global NAME
    NAME = "quality" + {"targets": "_targets", "penalties": "_penalties"}.get(args.grid, "") + (
        "_plain" if args.plain else "")
    if args.report:
        resummarize()
        return
    # The reduced grid (2 shared cores), most important first; results are written after every cell,
    # so a run cut short keeps what it measured. Samplings are compared in whole mode at 1K (and the
    # Qwen preset at 4K); longer lengths, YaRN and chunked mode run the chosen default (greedy) only,
    # and chunked mode asks the single-needle, number and not-in-the-document questions (each map
    # step generates, so a chunked question costs one answer per chunk). Entries: (length, mode,
    # samplings, tasks or None for all, seeds).
    all_s, few = list(SAMPLINGS), ["single", "number", "absent"]
    rest = ["multi_key", "multi_value", "date"]
    grid: list[tuple[int, str, list[str], list[str] | None, list[int]]] = [
        (1024, "whole", ["greedy", "qwen-instruct"], few, [1, 2, 3]),
        (2048, "chunked", ["greedy"], ["single", "number"], [1, 2, 3]),
        (4096, "whole", ["greedy"], few, [1]),
        (7680, "whole", ["greedy"], ["single", "number"], [1]),
        (1024, "whole", ["greedy", "qwen-instruct"], rest, [1, 2, 3]),
        (1024, "whole", ["t0.2"], few, [1, 2, 3]),
        (4096, "whole", ["greedy", "qwen-instruct"], few, [2, 3]),
        (10240, "whole", ["greedy"], ["single"], [1]),
        (7680, "whole", ["greedy"], ["single", "number"], [2, 3]),
        (2048, "chunked", ["greedy"], ["absent"], [1, 2, 3]),
    ]
    if args.grid == "targets":
        grid = [(n, "whole", ["greedy"], ["single", "number", "absent"], [1, 2, 3]) for n in (1024, 4096, 7680)]
        grid += [(2048, "chunked", ["greedy"], ["single", "number", "absent"], [1, 2, 3])]
    if args.grid == "penalties":  # issue #22: presence penalty and DRY against greedy, the same questions
        grid = [(1024, "whole", ["greedy", "greedy+presence", "greedy+dry"], ["single", "number", "absent"],
                 [1, 2, 3])]
    if args.full:
        grid = [(n, m, all_s, None, list(range(1, args.seeds + 1)))
                for m in ("whole", "chunked") for n in (1024, 2048, 4096, 7680, 15360)]
    if args.smoke:
        grid = [(1024, "whole", ["greedy"], ["single"], [1]), (2048, "chunked", ["greedy"], ["single"], [1])]
    tmp = Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    try:
        settings = Settings(data_dir=tmp, seed=1, answer_tokens=MAX_TOKENS, question_tokens=64, history_tokens=0,
                            chunk_context=CHUNK_CONTEXT, chunk_overlap=64, state_cache_bytes=4 * 1024**3,
                            n_threads=THREADS, **({"search_lines": 0, "unsupported_answers": "show"} if args.plain
                                                  else {}))
        registry = ModelRegistry(settings)
        spec = registry.get(None)
        engine = Engine(settings, registry)
        done = stored_cells() if args.resume else {}
        cells: list[Cell] = []
        for length, mode, samplings, only, seeds in grid:
            for seed in seeds:
                cells += run_cell(engine, spec, length, mode, samplings, seed, only, done)
                report(spec, args, [*cells, *done.values()], t0)
        cells += done.values()
        engine.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(spec, args, cells, t0)
    chart(summarize(cells))


def stored_cells() -> dict[tuple[Any, ...], Cell]:
    """The answers stored in quality.json, by (length, mode, sampling, seed)."""
    import json

    path = RESULTS / f"{NAME}.json"
    cells: dict[tuple[Any, ...], Cell] = {}
    if not path.is_file():
        return cells
    for a in json.loads(path.read_text())["answers"]:
        key = (a["length"], a["mode"], a["sampling"], a["seed"])
        r = {k: v for k, v in a.items() if k not in ("length", "mode", "sampling", "seed")}
        cells.setdefault(key, Cell(*key)).results.append(r)
    return cells


def resummarize() -> None:
    """Summary and chart again from the answers stored in quality.json."""
    import json

    path = RESULTS / f"{NAME}.json"
    data = json.loads(path.read_text())
    cells = stored_cells()
    data.update(summarize(list(cells.values())))
    path.write_text(json.dumps(data, indent=2) + "\n")
    chart(summarize(list(cells.values())))


def report(spec: Any, args: Any, cells: list[Cell], t0: float) -> None:
    write(NAME, {
        "model": spec.path.name, "grid": "full" if args.full else "smoke" if args.smoke else args.grid,
        "seeds": sorted({c.seed for c in cells}), "n_threads": THREADS, "chunk_context": CHUNK_CONTEXT,
        "max_tokens": MAX_TOKENS, "plain": NAME.endswith("_plain"),
        "elapsed_s": round(time.perf_counter() - t0, 1), **summarize(cells),
        "answers": [{"length": c.length, "mode": c.mode, "sampling": c.sampling, "seed": c.seed, **r}
                    for c in cells for r in c.results],
    }, quiet=True)


if __name__ == "__main__":
    main(sys.argv[1:])
