"""Choose the grounding method by measurement: precision and recall on a generated, labelled set.

    python -m bench.grounding            # a few seconds; writes bench/results/grounding.json
    python -m bench.grounding --judge    # adds the model's own yes/no verdict (minutes: one prompt per claim)

Each method is a similarity (word-overlap Jaccard, as the old `attribute()` did; coverage of the
claim's words; rapidfuzz's ratio and token_set_ratio) with or without docqa's fact gate (every
number, date, code and name of the claim must be in the passage), swept over thresholds. A claim
counts as correctly supported only when the passage found contains the labelled sentence.
precision = correct supported / all marked supported; recall = correct supported / all supportable.
"numeric precision" is the precision over claims holding a number or date, which must be 100%.

With --judge, the embedded model itself scores each claim against the best passage rapidfuzz finds (no fact
gate): "supported" when its next-token probability of "yes" beats "no". Measured on one seed (560 claims) as
`judge` alone and `judge+facts` (both must agree), against the chosen method on the same claims.
"""

from __future__ import annotations

import statistics
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
    judged = _judge(docs[:20], grounders[:20], grounding) if "--judge" in sys.argv else None
    write("grounding", {
        "seeds": seeds, "documents": len(docs), "claims": n_claims,
        "supportable": sum(c.support is not None for d in docs for c in d.claims),
        "kinds": sorted({c.kind for d in docs for c in d.claims}),
        "chosen": chosen, "best_per_method": best, "rows": rows, "elapsed_s": round(elapsed, 2),
        **({"model_judge": judged} if judged else {}),
    })
    for name, r in best.items():
        print(f"{name:22s} t={r['threshold']:>3}  P={r['precision']:.3f}  R={r['recall']:.3f}  "
              f"numericP={r['numeric_precision']:.3f}", file=sys.stderr)


JUDGE_PROMPT = ("Passage: {passage}\nClaim: {claim}\nDoes the passage support the claim, with every number, "
                "date and name the same? Answer yes or no.")


def _judge(docs: list[Any], grounders: list[Any], grounding: Any) -> dict[str, Any]:
    """The embedded model's own verdict on (claim, best passage) pairs, against the chosen method."""
    import math

    import numpy as np

    from docqa.engine import cpu
    from docqa.engine.models import ModelRegistry
    from docqa.engine.runner import new_llama
    from docqa.settings import Settings

    spec = ModelRegistry(Settings()).get(None)
    llm = new_llama({"model_path": str(spec.path), "n_ctx": 1024, "n_batch": 512, "n_threads": 1,
                     "n_threads_batch": 1, "logits_all": False, "verbose": False},
                    extra_buffers=cpu.use_extra_buffers("auto")[0])
    yes = [llm.tokenize(w.encode(), add_bos=False, special=False)[0] for w in ("yes", "Yes")]
    no = [llm.tokenize(w.encode(), add_bos=False, special=False)[0] for w in ("no", "No")]
    pairs: list[tuple[float, bool, bool, bool]] = []  # (log-odds yes:no, gated supported, right passage, supportable)
    t0 = time.perf_counter()
    for doc, g in zip(docs, grounders, strict=True):
        g.method, g.threshold = "token_set", grounding.SUPPORT_THRESHOLD
        for claim in doc.claims:
            gated = g.claim(claim.text)
            g.threshold = 0.0
            best = _ungated(g, claim.text)
            g.threshold = grounding.SUPPORT_THRESHOLD
            passage = best.passage["text"] if best.passage else ""
            prompt = ("<|im_start|>user\n" + JUDGE_PROMPT.format(passage=passage.strip(), claim=claim.text)
                      + "<|im_end|>\n<|im_start|>assistant\n")
            llm.reset()
            llm.eval(llm.tokenize(prompt.encode(), add_bos=False, special=True))
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))  # the last position's
            margin = (math.log(sum(math.exp(logits[t]) for t in yes))
                      - math.log(sum(math.exp(logits[t]) for t in no)))
            right = claim.support is not None and doc.sentences[claim.support] in passage
            pairs.append((margin, gated is not None and gated.status == "supported", right, claim.support is not None))
    elapsed = time.perf_counter() - t0

    def pr(marks: list[bool]) -> dict[str, Any]:
        tp = sum(m and r for m, (_, _, r, _) in zip(marks, pairs, strict=True))
        fp = sum(m and not r for m, (_, _, r, _) in zip(marks, pairs, strict=True))
        fn = sum(s and not (m and r) for m, (_, _, r, s) in zip(marks, pairs, strict=True))
        return {"precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
                "recall": round(tp / (tp + fn), 4) if tp + fn else 1.0,
                "f1": round(2 * tp / (2 * tp + fp + fn), 4) if tp else 0.0, "tp": tp, "fp": fp, "fn": fn}

    margins = sorted({round(m, 2) for m, *_ in pairs})
    sweep = [{"min_log_odds": t, **pr([m >= t for m, *_ in pairs])} for t in margins[:: max(1, len(margins) // 40)]]
    out: dict[str, Any] = {
        "model": spec.name, "claims": len(pairs), "seconds": round(elapsed, 1),
        "ms_per_claim": round(1000 * elapsed / max(len(pairs), 1), 1),
        "log_odds_yes_no": {"min": round(min(m for m, *_ in pairs), 2), "max": round(max(m for m, *_ in pairs), 2),
                            "mean_supportable": round(statistics.mean(m for m, _, r, _ in pairs if r), 3),
                            "mean_other": round(statistics.mean(m for m, _, r, _ in pairs if not r), 3)},
        "judge_yes_beats_no": pr([m > 0 for m, *_ in pairs]),
        "judge_best_threshold": max(sweep, key=lambda r: r["f1"]),
        "judge_and_facts_best": max(({"min_log_odds": t, **pr([m >= t and g for m, g, _, _ in pairs])}
                                     for t in margins[:: max(1, len(margins) // 40)]), key=lambda r: r["f1"]),
        "chosen": pr([g for _, g, _, _ in pairs]),
    }
    for name in ("judge_yes_beats_no", "judge_best_threshold", "judge_and_facts_best", "chosen"):
        print(f"{name:22s} P={out[name]['precision']:.3f} R={out[name]['recall']:.3f}", file=sys.stderr)
    return out


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
