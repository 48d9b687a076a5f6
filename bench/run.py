"""docqa benchmarks: each writes bench/results/<name>.json and prints a summary line.

    python -m bench.run ingest      # ingest pages/s (100-page PDF) vs pypdf alone; zip MB/s; parse peak RSS
    python -m bench.run prefill     # prompt reading through the runner process vs bare Llama.eval, extra buffers on/off
    python -m bench.run cache       # cold vs warm vs warm-after-restart answer latency, ~4,000-token document
    python -m bench.run yarn        # pass key in a ~14,000-token document with YaRN ×2 (minutes)
    python -m bench.run memory      # plan weights + KV + compute bytes vs measured RSS growth (bench/sidebyside.py)
    python -m bench.run batch       # 10-question batch over a ~4,000-token document vs answering each from scratch
    python -m bench.run server      # docqa vs llama-server: cold, warm and after-restart answers, 4K-token lease
    python -m bench.run readahead   # TTFT 20 s after a session opens: read-ahead vs without vs llama-server
    python -m bench.run priority    # an interactive question's TTFT while a 20-item batch runs vs idle
    python -m bench.run formats     # OCR pages/s (20-page scan); DOCX and HTML ingest vs the library alone; peak RSS
    python -m bench.run flash       # flash attention on vs off: reading, a question and an answer at 3.8K and 7.9K
    python -m bench.run llamabench  # prefill tok/s through docqa vs llama.cpp's llama-bench, fa off/on, n_batch 256/512
    python -m bench.run fast        # what `make bench` runs: ingest, memory, cache (a few minutes)
    python -m bench.run sidebyside  # ingest, memory, batch, llamabench (~40 min on 2 cores; llama-bench builds once)
    python -m bench.run all         # ingest, formats, prefill, cache, memory, batch, llamabench (yarn: separate)
    python -m bench.report          # markdown table + bench/results/summary.png from the JSON files

Targets are ratios measured in one run on one machine, never absolute times.
"""

from __future__ import annotations

import io
import json
import platform
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
FILLER = (
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
    "Clause {n}: the parties agree that nothing in this line matters for the question.\n"
)


def write(name: str, data: dict[str, Any], quiet: bool = False) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "machine": machine(), **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    if not quiet:
        print(json.dumps(data, indent=2))


def machine() -> dict[str, Any]:
    """What every result file records about where it was measured."""
    return {"python": platform.python_version(), "cpu_count": _cpus(), "platform": platform.platform()}


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


def _settings(tmp: Path, **kw: Any):  # noqa: ANN202
    from docqa.settings import Settings

    return Settings(data_dir=tmp, seed=1, **kw)


def _best(fn: Callable[[], float], runs: int = 3) -> float:
    return min(fn() for _ in range(runs))


# -- ingest ---------------------------------------------------------------------------------------

def make_pdf(pages: int) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=10)
    for p in range(pages):
        pdf.add_page()
        for n in range(30):
            line = f"Page {p + 1}, clause {n}: the lessee shall pay the rent on the first day."
            pdf.cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def make_codebase_zip(files: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(files):
            body = "".join(f"def function_{i}_{n}(x):\n    return x * {n}  # line {n}\n\n" for n in range(120))
            zf.writestr(f"repo/src/module_{i}.py", body)
    return buf.getvalue()


def bench_ingest() -> None:
    from pypdf import PdfReader

    from docqa.documents import DocumentService
    from docqa.store.db import Database, migrate
    from docqa.store.files import BlobStore

    pdf = make_pdf(100)
    codebase = make_codebase_zip(200)

    def pypdf_alone() -> float:
        t = time.perf_counter()
        for page in PdfReader(io.BytesIO(pdf)).pages:
            page.extract_text()
        return time.perf_counter() - t

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(Path(tmp))
        migrate(settings.resolved_database_url)
        db = Database(settings.resolved_database_url)
        service = DocumentService(settings, db, BlobStore(settings.blobs_dir))
        peaks: list[int] = []

        def docqa_pdf() -> float:
            t = time.perf_counter()
            r = service.ingest(f"lease-{time.perf_counter_ns()}.pdf", pdf + f"\n%{time.perf_counter_ns()}".encode())
            peaks.append(r.parse_peak_rss_bytes)
            return time.perf_counter() - t

        def docqa_zip() -> float:
            t = time.perf_counter()
            data = _retag_zip(codebase)
            service.ingest("repo.zip", data)
            return time.perf_counter() - t

        base = _best(pypdf_alone)
        ours = _best(docqa_pdf)
        zip_s = _best(docqa_zip)
        db.dispose()
    results["pdf_pages"] = 100
    results["pypdf_alone_pages_per_s"] = round(100 / base, 1)
    results["docqa_ingest_pages_per_s"] = round(100 / ours, 1)
    results["ratio_docqa_vs_pypdf"] = round(base / ours, 3)
    results["zip_bytes"] = len(codebase)
    results["zip_uncompressed_bytes"] = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(codebase)).infolist())
    results["docqa_zip_MB_per_s_uncompressed"] = round(results["zip_uncompressed_bytes"] / zip_s / 1e6, 2)
    results["parse_process_peak_rss_MiB"] = round(max(peaks) / 2**20, 1)
    write("ingest", results)


def _retag_zip(data: bytes) -> bytes:
    """The same archive with a fresh comment, so dedup does not short-circuit the measurement."""
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.comment = str(time.perf_counter_ns()).encode()
    return buf.getvalue()


# -- model benchmarks -----------------------------------------------------------------------------

def _document(n_lines: int, key_line: int | None = None, key: str = "52817"):  # noqa: ANN202
    from docqa.ingest.text import split_lines
    from docqa.store.models import Document, Section

    lines = [FILLER.format(n=n).rstrip("\n") for n in range(n_lines)]
    if key_line is not None:
        lines.insert(key_line, f"The pass key is {key}. Remember it. {key} is the pass key.")
    text = "\n".join(lines)
    doc = Document(id="bench", filename="bench.txt", kind="text")
    secs = [Section(id=i, ordinal=i, path=None, line_start=s.line_start, line_end=s.line_end, text=s.text)
            for i, s in enumerate(split_lines(text, 2000))]
    return [(doc, secs)]


def bench_cache() -> None:
    from docqa.engine.engine import AskOptions, Engine
    from docqa.engine.models import ModelRegistry

    tmp = Path(tempfile.mkdtemp())
    try:
        settings = _settings(tmp, answer_tokens=32)
        sources = _document(88, key_line=50)
        opts = AskOptions(max_tokens=16, sampling={"temperature": 0, "seed": 1})
        registry = ModelRegistry(settings)
        spec = registry.get(None)
        engine = Engine(settings, registry)
        plan = engine.plan(spec, sources)

        def ask(e: Engine, q: str) -> tuple[float, dict[str, Any]]:
            t = time.perf_counter()
            a = e.answer(spec, plan, sources, q, opts)
            return time.perf_counter() - t, {"answer": a.answer, **a.timings}

        cold_s, cold = ask(engine, "What is the pass key?")
        warm_s, warm = ask(engine, "Which number is the pass key?")
        engine.close()
        engine2 = Engine(settings, ModelRegistry(settings))
        restart_s, restart = ask(engine2, "Tell me the pass key.")
        engine2.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write("cache", {
        "model": spec.path.name, "document_tokens": plan.prompt_tokens,
        "cold_s": round(cold_s, 3), "warm_s": round(warm_s, 3), "warm_after_restart_s": round(restart_s, 3),
        "warm_over_cold": round(warm_s / cold_s, 4), "restart_over_cold": round(restart_s / cold_s, 4),
        "time_to_first_token_s": {k: v["prefill_s"] for k, v in (("cold", cold), ("warm", warm), ("restart", restart))},
        "ttft_warm_over_cold": round(warm["prefill_s"] / cold["prefill_s"], 4),
        "ttft_restart_over_cold": round(restart["prefill_s"] / cold["prefill_s"], 4),
        "target_warm_over_cold": 0.05,
        "note": "latencies include generating up to 16 answer tokens, the same work in all three; "
                "time to first token is the cost of (re)reading the document",
        "runs": {"cold": cold, "warm": warm, "restart": restart},
    })


def bench_yarn() -> None:
    from docqa.engine.engine import AskOptions, Engine
    from docqa.engine.models import ModelRegistry

    tmp = Path(tempfile.mkdtemp())
    try:
        settings = _settings(tmp, answer_tokens=32, question_tokens=64, state_cache_bytes=0)
        sources = _document(300, key_line=150, key="71432")  # ≈ 14,000 tokens: YaRN ×2
        registry = ModelRegistry(settings)
        spec = registry.get(None)
        engine = Engine(settings, registry)
        plan = engine.plan(spec, sources)
        t = time.perf_counter()
        a = engine.answer(spec, plan, sources, "What is the pass key?",
                          AskOptions(max_tokens=24, sampling={"temperature": 0, "seed": 1}))
        elapsed = time.perf_counter() - t
        engine.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write("yarn", {
        "model": spec.path.name, "document_tokens": plan.prompt_tokens, "n_ctx": plan.n_ctx,
        "n_ctx_train": plan.n_ctx_train, "yarn_factor": plan.kv.yarn_factor, "mode": plan.mode,
        "answer": a.answer, "found": "71432" in a.answer, "seconds": round(elapsed, 1), "timings": a.timings,
    })


def _lazy(module: str, name: str) -> Callable[[], None]:
    """`bench.<module>.bench_<name>`, imported when it runs (each pulls in the model stack or a server)."""
    def run() -> None:
        import importlib

        getattr(importlib.import_module(f"bench.{module}"), f"bench_{name}")()

    return run


BENCHES = {"server": _lazy("llama_server", "server"), "remote": _lazy("remote", "remote"),
           "flash": _lazy("flash", "flash"), "readahead": _lazy("priorities", "readahead"),
           "priority": _lazy("priorities", "priority"), "ingest": bench_ingest, "formats": _lazy("formats", "formats"),
           "prefill": _lazy("runner", "prefill"), "cache": bench_cache, "yarn": bench_yarn,
           "memory": _lazy("sidebyside", "memory"), "batch": _lazy("sidebyside", "batch"),
           "llamabench": _lazy("sidebyside", "llamabench"), "pull": _lazy("pull", "pull"),
           "remote-vllm": _lazy("remote_vllm", "remote_vllm")}
GROUPS = {
    "fast": ["ingest", "memory", "cache"],
    "sidebyside": ["ingest", "memory", "batch", "llamabench"],
    "all": ["ingest", "formats", "prefill", "cache", "memory", "batch", "llamabench"],
}


def main(argv: list[str]) -> None:
    if "--engine" in argv:  # `remote --engine vllm`: the remote benchmark against that engine (bench/remote_vllm.py)
        i = argv.index("--engine")
        engine = argv[i + 1] if i + 1 < len(argv) else ""
        argv = [f"remote-{engine}" if a == "remote" and engine != "llama-server" else a
                for a in argv[:i] + argv[i + 2:]]
    names = argv or ["all"]
    for name in names:
        for bench in GROUPS.get(name, [name]):
            if bench not in BENCHES:
                raise SystemExit(f"unknown benchmark {bench!r}; choose from {', '.join(BENCHES)} "
                                 f"or {', '.join(GROUPS)}")
            BENCHES[bench]()


if __name__ == "__main__":
    main(sys.argv[1:])
