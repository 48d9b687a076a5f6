"""Several instances on PostgreSQL vs one on SQLite, measured in one run on one machine.

    python -m bench.multi            # → bench/results/multi.json (a few minutes)
    python -m bench.multi --clients 20 --seconds 20 --questions 20

1. Non-model endpoints (listings, document and section reads, health, uploads, deletes): bench.load's
   mix without questions, `--clients` async clients for `--seconds`, against (a) one instance on
   SQLite and (b) two instances on one throwaway PostgreSQL server and one data folder, requests
   round-robin between them; throughput (requests/s) and p50/p95 latency, and the load audit
   (`problems` must be empty for both).
2. Batch throughput: one `--questions`-question batch (max_tokens 8) over a small document, answered by
   one instance vs by two instances on one PostgreSQL database (each instance loads its own copy of the
   model: docqa has no shared model server yet); answers per minute from creation to the last answer.

3. `--shared-server` (→ bench/results/multi_shared.json, only this part): the same batch answered by
   one vs two instances that share one model server (a real llama-server with two slots, the embedded
   SmolLM2, as a team runs a GPU host behind several docqa instances): each instance loads no model.

Ratios are within this run; absolute numbers depend on the machine (2 cores here: two instances share them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench import load
from bench.run import RESULTS, machine

REPO = Path(__file__).resolve().parents[1]


def endpoints(clients: int, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, kw in (("sqlite_1_instance", {}), ("postgresql_2_instances", {"instances": 2, "postgresql": True})):
        report = load.run(clients=clients, duration_s=0.0, baseline_s=seconds, max_requests=100_000, question_docs=1,
                          **kw)  # type: ignore[arg-type]
        lat = report["latency"]
        out[label] = {
            "requests": report["requests_baseline_phase"],
            "requests_per_s": report["requests_per_s_baseline_phase"],
            "non_model": lat["non_model_baseline_no_questions"],
            "reads": lat["reads_baseline_no_questions"],
            "uploads": lat["uploads_baseline_no_questions"],
            "status_counts": report["status_counts"],
            "audit": report["audit"],
            "problems": report["problems"],
        }
    one, two = out["sqlite_1_instance"], out["postgresql_2_instances"]
    out["ratio_throughput_2pg_over_1sqlite"] = round(two["requests_per_s"] / one["requests_per_s"], 2)
    out["ratio_p95_2pg_over_1sqlite"] = round(two["non_model"]["p95_ms"] / one["non_model"]["p95_ms"], 2)
    return out


def batch(instances: int, questions: int, database_url: str, data_dir: Path, model_url: str | None = None,
          ) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from tests.browser import Server

    env = {"DOCQA_DATABASE_URL": database_url, "DOCQA_RATE_UPLOADS": "0", "DOCQA_RATE_QUESTIONS": "0",
           "DOCQA_SEED": "1", **({"DOCQA_MODELS": f"shared={model_url}"} if model_url else {})}
    servers = [Server(data_dir, env=env) for _ in range(instances)]
    for n, s in enumerate(servers):
        s.log_path = data_dir / f"serve-{n}.log"
    try:
        for s in servers:
            s.start()
        with httpx.Client(base_url=servers[0].url, timeout=120) as http:
            doc = http.post("/api/documents", files={"file": ("garden.txt", load.GARDEN.encode(), "text/plain")})
            qs = [f"{load.QUESTIONS[i % len(load.QUESTIONS)]} ({i + 1})" for i in range(questions)]
            t0 = time.monotonic()
            r = http.post("/api/batches", json={"document_ids": [doc.json()["id"]], "questions": qs, "max_tokens": 8,
                                                "sampling": {"temperature": 0, "seed": 1},
                                                **({"model": "shared"} if model_url else {})})
            r.raise_for_status()
            batch_id = r.json()["id"]
            while True:
                b = http.get(f"/api/batches/{batch_id}").json()
                if b["status"] not in ("queued", "running"):
                    break
                time.sleep(0.1)
            wall = time.monotonic() - t0
    finally:
        for s in servers:
            s.stop()
    attempts = [x["attempts"] for x in b["results"]]
    return {"instances": instances, "status": b["status"], "done": b["done"], "total": b["total"],
            "wall_s": round(wall, 2), "items_per_min": round(b["done"] / wall * 60, 1),
            "all_answered_once": all(a == 1 for a in attempts) and b["done"] == b["total"]}


def batches(questions: int) -> dict[str, Any]:
    import tempfile

    sys.path.insert(0, str(REPO))
    from tests.pg import Cluster

    cluster = Cluster().start()
    out: dict[str, Any] = {}
    try:
        for n in (1, 2):
            with tempfile.TemporaryDirectory(prefix="docqa-multi-") as tmp:
                out[f"postgresql_{n}_instance{'s' if n > 1 else ''}"] = batch(
                    n, questions, cluster.url(cluster.create_database()), Path(tmp) / "data")
    finally:
        cluster.remove()
    out["ratio_items_per_min_2_over_1"] = round(out["postgresql_2_instances"]["items_per_min"]
                                                / out["postgresql_1_instance"]["items_per_min"], 2)
    return out


def shared_server(questions: int) -> dict[str, Any]:
    """One vs two instances on one PostgreSQL database, both answering through one llama-server."""
    import tempfile

    sys.path.insert(0, str(REPO))
    from docqa.fetch import embedded_model_path
    from docqa.settings import Settings
    from tests.llama_servers import LlamaServer
    from tests.pg import Cluster

    cluster = Cluster().start()
    out: dict[str, Any] = {}
    try:
        for n in (1, 2):
            with tempfile.TemporaryDirectory(prefix="docqa-shared-") as tmp:
                server = LlamaServer(embedded_model_path(Settings().models_dir), Path(tmp) / "llama-server.log",
                                     ctx=2048, slots=2, threads=2).start()
                try:
                    out[f"{n}_instance{'s' if n > 1 else ''}_one_server"] = {
                        **batch(n, questions, cluster.url(cluster.create_database()), Path(tmp) / "data",
                                model_url=server.url),
                        "server": "llama-server -np 2 -c 4096 -t 2"}
                finally:
                    server.stop()
    finally:
        cluster.remove()
    out["ratio_items_per_min_2_over_1"] = round(out["2_instances_one_server"]["items_per_min"]
                                                / out["1_instance_one_server"]["items_per_min"], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.multi", description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--questions", type=int, default=20)
    ap.add_argument("--out", type=Path, default=RESULTS / "multi.json")
    ap.add_argument("--shared-server", action="store_true",
                    help="only the batch through one shared llama-server, 1 vs 2 instances (multi_shared.json)")
    args = ap.parse_args(argv)
    if args.shared_server:
        shared = {"benchmark": "multi_shared", "machine": machine(), "questions": args.questions,
                  "batch": shared_server(args.questions)}
        (RESULTS / "multi_shared.json").write_text(json.dumps(shared, indent=2) + "\n")
        print(json.dumps(shared["batch"], indent=2))
        return 0
    report = {"benchmark": "multi", "machine": machine(),
              "settings": {"clients": args.clients, "seconds": args.seconds, "questions": args.questions},
              "endpoints": endpoints(args.clients, args.seconds), "batch": batches(args.questions)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    e, b = report["endpoints"], report["batch"]
    print(json.dumps({"throughput_ratio": e["ratio_throughput_2pg_over_1sqlite"],
                      "p95_ratio": e["ratio_p95_2pg_over_1sqlite"],
                      "items_per_min_ratio": b["ratio_items_per_min_2_over_1"],
                      "problems": e["sqlite_1_instance"]["problems"] + e["postgresql_2_instances"]["problems"]},
                     indent=2))
    print(f"wrote {args.out}")
    problems = e["sqlite_1_instance"]["problems"] + e["postgresql_2_instances"]["problems"]
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
