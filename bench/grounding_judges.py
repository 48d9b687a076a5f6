"""Models as yes/no entailment judges on the real set (issue #22): alone, and as a veto on idf's marks.

    python -m bench.grounding_judges alone smollm2-135m 12   # 12 supported + 12 unsupported sentences
    python -m bench.grounding_judges veto gemma3-270m 60     # about 60 of idf's supported marks

`alone`: a balanced sample (random.Random(22) over set.jsonl) of sentences labelled supported whose idf
passage is a right one and sentences labelled unsupported, each judged on idf's passage
(bench.grounding.judge_accuracy). `veto`: every n-th sentence idf marks supported, and how many right
and wrong marks the judge keeps. Prints JSON; bench/results/grounding_judges.json holds the figures.
"""

from __future__ import annotations

import json
import random
import sys
import time
from typing import Any

from bench.grounding import ROOT, LabelledSet, _overlaps, judge_accuracy, load_real, model_judge


def alone(name: str, per: int) -> dict[str, Any]:
    s = load_real(ROOT)
    rows = s.rows[:]
    random.Random(22).shuffle(rows)
    pick: dict[str, list[Any]] = {"supported": [], "unsupported": []}
    for r in rows:
        if r.label not in pick or len(pick[r.label]) >= per:
            continue
        g = s.grounders[r.doc]
        g.method, g.threshold = "idf", 0.0
        c = g.claim(r.sentence, r.question)
        p = (c.passage or c.nearest) if c else None
        if p is not None and (r.label == "unsupported" or _overlaps(p, r.support)):
            pick[r.label].append(r)
    sub = LabelledSet(s.name, s.grounders, pick["supported"] + pick["unsupported"], s.answers, s.documents)
    judge, info = model_judge(name)
    t0 = time.perf_counter()
    return {**info, "alone": judge_accuracy(sub, judge), "wall_s": round(time.perf_counter() - t0)}


def veto(name: str, n: int) -> dict[str, Any]:
    s = load_real(ROOT)
    marked = []
    for r in s.rows:
        g = s.grounders[r.doc]
        g.method, g.threshold = "idf", 70.0
        c = g.claim(r.sentence, r.question)
        if c is not None and c.status in ("quoted", "supported") and c.passage:
            marked.append((r, c.passage, r.label == "supported" and _overlaps(c.passage, r.support)))
    sample = marked[:: max(1, len(marked) // n)]
    judge, info = model_judge(name)
    out = {"marks": len(marked), "sampled": len(sample), "right_marks": 0, "right_kept": 0, "wrong_marks": 0,
           "wrong_kept": 0}
    for r, passage, good in sample:
        kind = "right" if good else "wrong"
        out[f"{kind}_marks"] += 1
        out[f"{kind}_kept"] += judge(r.sentence, passage["text"])
    return {**info, **out}


if __name__ == "__main__":
    what, model, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps(alone(model, count) if what == "alone" else veto(model, count), default=str))
