"""Summarize bench/results/*.json: a markdown table on stdout and bench/results/summary.png.

    python -m bench.report            # needs matplotlib for the chart: pip install -e '.[bench]'

Every figure is a ratio measured in one run on one machine against its baseline, shown next to the
target it is held to. Benchmarks whose JSON is missing are left out; without matplotlib the table is
still printed and the chart is skipped with a note.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Metric:
    file: str
    label: str
    value: Callable[[dict[str, Any]], float]
    target: Callable[[dict[str, Any]], float | None]
    higher_is_better: bool
    detail: Callable[[dict[str, Any]], str]


def _llamabench_detail(d: dict[str, Any]) -> str:
    parts = []
    for depth, h in d["headline"].items():
        parts.append(f"{depth}: docqa {h['docqa_tokens_per_s']:g} tok/s ({h['docqa_setting'].split(' pp')[0]}) vs "
                     f"llama-bench best {h['llama_bench_best_tokens_per_s']:g} tok/s "
                     f"({h['llama_bench_best_setting'].split(' pp')[0]})")
    threads = d["threads"]["prompt"] if isinstance(d["threads"], dict) else d["threads"]
    return "; ".join(parts) + f"; {threads} threads; median runs"


def _memory_detail(d: dict[str, Any]) -> str:
    return "; ".join(f"{c['case']}: predicted {c['predicted_MiB']:g} MiB (weights {c['predicted_weights_MiB']:g} + "
                     f"KV {c['predicted_kv_MiB']:g} + compute {c['predicted_compute_MiB']:g}), measured "
                     f"{c['measured_rss_growth_after_reading_MiB']:g} MiB" for c in d["cases"])


METRICS = [
    Metric("llamabench.json", "prefill: docqa / llama-bench best",
           lambda d: d["ratio_docqa_vs_llama_bench_best"], lambda d: d.get("target_ratio"), True,
           _llamabench_detail),
    Metric("batch.json", "10-question batch: naive s / batch s",
           lambda d: d["ratio_naive_over_batch"], lambda d: d.get("target_ratio"), True,
           lambda d: f"{d['questions']} questions, ~{d['document_prompt_tokens']:,}-token document, "
                     f"{d['max_tokens']} answer tokens: batch {d['batch_s']:g} s vs naive {d['naive_s']:g} s; "
                     f"{d['same_answers']}/{d['questions']} answers identical"),
    Metric("memory.json", "memory: measured RSS / predicted",
           lambda d: d["ratio_measured_over_predicted"], lambda d: d.get("target_ratio_max"), False,
           _memory_detail),
    Metric("ingest.json", "ingest: docqa pages/s / pypdf alone",
           lambda d: d["ratio_docqa_vs_pypdf"], lambda d: d.get("target_ratio"), True,
           lambda d: f"100-page PDF: {d['docqa_ingest_pages_per_s']:g} pages/s through docqa vs "
                     f"{d['pypdf_alone_pages_per_s']:g} pages/s for pypdf alone"),
    Metric("prefill.json", "prefill: docqa / bare Llama.eval",
           lambda d: d["ratio_docqa_vs_bare"], lambda d: d.get("target_ratio"), True,
           lambda d: f"{d['tokens']:,} tokens: docqa {d['docqa_tokens_per_s_median']:g} tok/s vs bare "
                     f"{d['bare_llama_eval_tokens_per_s_median']:g} tok/s (medians; ratio: median of "
                     f"{len(d['pair_ratios'])} adjacent pairs)"),
    Metric("cache.json", "cache: warm / cold answer latency",
           lambda d: d["warm_over_cold"], lambda d: d.get("target_warm_over_cold"), False,
           lambda d: f"cold {d['cold_s']:g} s, warm {d['warm_s']:g} s, after restart {d['warm_after_restart_s']:g} s"),
]


def collect(results: Path = RESULTS) -> list[dict[str, Any]]:
    rows = []
    for m in METRICS:
        path = results / m.file
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        value, target = float(m.value(data)), m.target(data)
        met = None if target is None else (value >= target if m.higher_is_better else value <= target)
        rows.append({"label": m.label, "value": value, "target": target, "higher_is_better": m.higher_is_better,
                     "met": met, "detail": m.detail(data), "file": m.file})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| measure | ratio | target | met | figures |", "|---|---|---|---|---|"]
    for r in rows:
        target = "none set" if r["target"] is None else ("≥ " if r["higher_is_better"] else "≤ ") + f"{r['target']:g}"
        met = {True: "yes", False: "**no**", None: "–"}[r["met"]]
        out.append(f"| {r['label']} | {r['value']:g}× | {target} | {met} | {r['detail']} |")
    return "\n".join(out)


def chart(rows: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        print("(matplotlib is not installed: no chart; pip install -e '.[bench]')", file=sys.stderr)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(rows)
    cols = min(3, n) or 1
    lines = (n + cols - 1) // cols or 1
    fig, axes = plt.subplots(lines, cols, figsize=(4.2 * cols, 3.2 * lines), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, r in zip(axes.flat, rows, strict=False):
        colour = {True: "#2e7d32", False: "#c62828", None: "#757575"}[r["met"]]
        ax.bar([0], [r["value"]], color=colour, width=0.8)
        ax.text(0, r["value"], f"{r['value']:g}×", ha="center", va="bottom", fontsize=11, fontweight="bold")
        top = max(r["value"], r["target"] or 0) * 1.3 or 1
        if r["target"] is not None:
            ax.axhline(r["target"], color="black", linestyle="--", linewidth=1)
            ax.text(1.45, r["target"], f"target\n{'≥' if r['higher_is_better'] else '≤'} {r['target']:g}",
                    va="center", ha="right", fontsize=8, backgroundcolor="white")
        else:
            ax.text(1.45, top * 0.5, "no target\nset", va="center", ha="right", fontsize=8)
        ax.set_ylim(0, top)
        ax.set_xlim(-0.6, 1.5)
        ax.set_xticks([])
        ax.set_title(r["label"], fontsize=9)
        ax.set_ylabel("higher is better" if r["higher_is_better"] else "lower is better", fontsize=8)
    fig.suptitle("docqa side by side: ratios measured in one run on one machine, vs their targets", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str]) -> None:
    results = Path(argv[0]) if argv else RESULTS
    rows = collect(results)
    if not rows:
        raise SystemExit(f"no results in {results}; run `python -m bench.run` first")
    print(table(rows))
    out = results / "summary.png"
    if chart(rows, out):
        print(f"\nchart: {out}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
