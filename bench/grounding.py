"""Choose the grounding method by measurement: precision and recall on a generated, labelled set.

    python -m bench.grounding      # a few seconds; writes bench/results/grounding.json

Each method is a similarity (word-overlap Jaccard, as the old `attribute()` did; coverage of the
claim's words; rapidfuzz's ratio and token_set_ratio) with or without docqa's fact gate (every
number, date, code and name of the claim must be in the passage), swept over thresholds. A claim
counts as correctly supported only when the passage found contains the labelled sentence.
precision = correct supported / all marked supported; recall = correct supported / all supportable.
"numeric precision" is the precision over claims holding a number or date, which must be 100%.
"""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace
from typing import Any

from bench.grounding_set import make_set
from bench.run import write

METHODS = ["jaccard", "coverage", "ratio", "token_set"]
THRESHOLDS = [30, 40, 50, 55, 60, 65, 70, 75, 80]


def evaluate(method: str, gate: bool, threshold: float, docs: list[Any], grounders: list[Any]) -> dict[str, Any]:
    tp = fp = fn = 0
    num_tp = num_fp = 0
    for doc, g in zip(docs, grounders, strict=True):
        g.method, g.threshold = method, threshold
        for claim in doc.claims:
            c = g.claim(claim.text) if gate else _ungated(g, claim.text)
            marked = c is not None and c.status == "supported"
            right = marked and claim.support is not None and doc.sentences[claim.support] in c.passage["text"]
            if marked and right:
                tp += 1
                num_tp += claim.numeric
            elif marked:
                fp += 1
                num_fp += claim.numeric
            if claim.support is not None and not right:
                fn += 1
    return {
        "method": method, "fact_gate": gate, "threshold": threshold,
        "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
        "recall": round(tp / (tp + fn), 4) if tp + fn else 1.0,
        "numeric_precision": round(num_tp / (num_tp + num_fp), 4) if num_tp + num_fp else 1.0,
        "f1": round(2 * tp / (2 * tp + fp + fn), 4) if tp else 0.0,
    }


def _ungated(g: Any, text: str) -> Any:
    """The claim judged on similarity alone (no facts required)."""
    from docqa.engine import grounding

    plain = grounding._MARKER.sub(" ", text).strip()
    empty = grounding.Facts(frozenset(), frozenset(), frozenset(), frozenset())
    best = g._best(plain, empty, g.passages, g._facts)
    if best is None or best[0] < g.threshold:
        return grounding.Claim(text, "unsupported")
    return grounding.Claim(text, "supported", grounding._passage_dict(best[1]), best[0])


def main() -> None:
    from docqa.engine import grounding

    _patch_ratio(grounding)
    seeds = [1, 2, 3]
    docs = [d for s in seeds for d in make_set(s, 20)]
    n_claims = sum(len(d.claims) for d in docs)
    t0 = time.perf_counter()
    grounders = []
    for i, doc in enumerate(docs):
        d = SimpleNamespace(id=f"d{i}", filename="contract.txt")
        sec = SimpleNamespace(id=i, page=None, path=None, line_start=1, line_end=len(doc.sentences), text=doc.text)
        grounders.append(grounding.Grounder([(d, [sec])]))
    rows = [evaluate(m, gate, t, docs, grounders) for m in METHODS for gate in (False, True) for t in THRESHOLDS]
    elapsed = time.perf_counter() - t0
    best: dict[str, Any] = {}
    for m in METHODS:
        for gate in (False, True):
            cands = [r for r in rows if r["method"] == m and r["fact_gate"] == gate]
            best[f"{m}{'+facts' if gate else ''}"] = max(cands, key=lambda r: (r["numeric_precision"] == 1.0, r["f1"]))
    chosen = next(r for r in rows if r["method"] == "token_set" and r["fact_gate"]
                  and r["threshold"] == grounding.SUPPORT_THRESHOLD)
    write("grounding", {
        "seeds": seeds, "documents": len(docs), "claims": n_claims,
        "supportable": sum(c.support is not None for d in docs for c in d.claims),
        "kinds": sorted({c.kind for d in docs for c in d.claims}),
        "chosen": chosen, "best_per_method": best, "rows": rows, "elapsed_s": round(elapsed, 2),
    })
    for name, r in best.items():
        print(f"{name:22s} t={r['threshold']:>3}  P={r['precision']:.3f}  R={r['recall']:.3f}  "
              f"numericP={r['numeric_precision']:.3f}", file=sys.stderr)


def _patch_ratio(grounding: Any) -> None:
    """Add plain rapidfuzz.fuzz.ratio as a measured alternative (not offered by docqa itself)."""
    from rapidfuzz import fuzz

    original = grounding.similarity

    def similarity(claim: str, passage: str, method: str = "token_set") -> float:
        if method == "ratio":
            a, b = grounding.words(claim), grounding.words(passage)
            return float(fuzz.ratio(" ".join(a), " ".join(b))) if a and b else 0.0
        return original(claim, passage, method)

    grounding.similarity = similarity


if __name__ == "__main__":
    main()
