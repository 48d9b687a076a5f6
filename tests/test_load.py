"""Back-pressure and load, for real: `docqa serve` subprocesses on 127.0.0.1, the real tiny model.

1. With DOCQA_QUEUE_SIZE=1: one question reads a long-ish document, a second waits, a third is
   refused with 503 + Retry-After + a sentence (as JSON even when a stream was asked for);
   meanwhile listings, section reads, health and an upload succeed; both accepted questions are
   answered and stored, the refused one is not.
2. A question holds its place in the queue from acceptance to its end: a chunked answer's steps are
   never refused halfway, and a place is released exactly once.
3. A small run of bench/load.py (20 clients, 20 s): no 5xx but the intended 503s, no lost or
   duplicated rows, every 200 answer stored exactly once (the bigger run: `python -m bench.load`).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.load import run as run_load
from docqa.engine.backend import Ticket
from docqa.engine.engine import AskOptions, Engine
from docqa.engine.models import ModelRegistry
from docqa.errors import QueueFull
from docqa.settings import Settings
from docqa.store.models import Document, Section
from tests.browser import Server
from tests.support import local_runtime

SERVER_ENV = {"DOCQA_RATE_UPLOADS": "0", "DOCQA_RATE_QUESTIONS": "0", "DOCQA_SEED": "1",
              "DOCQA_PRINCIPAL_CONCURRENCY": "64"}  # the model queue is what is tested here, not the gate


def long_document(lines: int = 12) -> bytes:
    """~450 prompt tokens: reading them in slices of 64 keeps the tiny model busy for seconds here."""
    return "".join(
        f"Bed {n} of the Harbor Lane garden is rented by family {n * 7 % 53} for {30 + n % 9} euros; "
        f"it grows {('beans', 'kale', 'leeks', 'squash')[n % 4]} this season.\n"
        for n in range(1, lines + 1)
    ).encode()


def sse_question(base: str, sid: str, body: dict[str, Any], events: list[tuple[str, dict[str, Any]]],
                 started: threading.Event) -> None:
    with httpx.Client(base_url=base, timeout=180) as http, http.stream(
        "POST", f"/api/sessions/{sid}/questions", json=body, headers={"accept": "text/event-stream"}
    ) as r:
        assert r.status_code == 200, r.read()
        kind = ""
        for line in r.iter_lines():
            if line.startswith("event:"):
                kind = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                events.append((kind, json.loads(line.partition(":")[2])))
                if kind == "progress":
                    started.set()
    started.set()


def timed(fn, *args, **kw) -> tuple[httpx.Response, float]:  # noqa: ANN001
    t0 = time.perf_counter()
    r = fn(*args, **kw)
    return r, time.perf_counter() - t0


def model_health(http: httpx.Client) -> dict[str, Any]:
    return http.get("/api/health").json()["details"]["models"]["default"]


def test_full_queue_is_503_while_reads_and_uploads_go_on(tmp_path: Path) -> None:
    env = {**SERVER_ENV, "DOCQA_QUEUE_SIZE": "1", "DOCQA_N_BATCH": "64"}  # progress every 64 tokens
    server = Server(tmp_path / "data", env=env).start()
    threads: list[threading.Thread] = []
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            doc = http.post("/api/documents", files={"file": ("beds.txt", long_document(), "text/plain")}).json()
            s1, s2, s3 = (http.post("/api/sessions", json={"document_ids": [doc["id"]]}).json()["id"]
                          for _ in range(3))
            idle = model_health(http)
            assert idle["state"] == "idle" and idle["queue_size"] == 1 and idle["queue_depth"] == 0, idle

            # 1. a question that reads the document: it holds the model
            events: list[tuple[str, dict[str, Any]]] = []
            started = threading.Event()
            body = {"question": "Which family rents bed 12?", "max_tokens": 16}
            threads.append(threading.Thread(target=sse_question, args=(server.url, s1, body, events, started)))
            threads[-1].start()
            assert started.wait(60), "the first question never started reading"

            # 2. a second one waits in the queue
            second: dict[str, Any] = {}

            def ask_second() -> None:
                with httpx.Client(base_url=server.url, timeout=180) as h:
                    second["r"] = h.post(f"/api/sessions/{s2}/questions",
                                         json={"question": "What does bed 3 grow?", "max_tokens": 8})

            threads.append(threading.Thread(target=ask_second))
            threads[-1].start()
            deadline = time.monotonic() + 20
            while (h := model_health(http))["waiting"] < 1:
                assert time.monotonic() < deadline and "r" not in second, f"the second question never queued: {h}"
                time.sleep(0.05)
            assert h["state"] == "busy" and h["running"] == 1 and h["queue_depth"] == 2, h

            # 3. a third is refused at once: 503, Retry-After, a sentence; as JSON even when streaming was asked
            third, third_s = timed(http.post, f"/api/sessions/{s3}/questions", json={"question": "How many beds?"})
            streamed, _ = timed(http.post, f"/api/sessions/{s3}/questions", json={"question": "How many beds?"},
                                headers={"accept": "text/event-stream"})
            # meanwhile the rest of the service answers
            listing, listing_s = timed(http.get, "/api/documents")
            sections, sections_s = timed(http.get, f"/api/documents/{doc['id']}/sections", params={"limit": 50})
            health, health_s = timed(http.get, "/api/health")
            upload, upload_s = timed(http.post, "/api/documents",
                                     files={"file": ("note.txt", b"Bring gloves on Saturday.\n", "text/plain")})
            still = model_health(http)

            for r in (third, streamed):
                assert r.status_code == 503, r.text
                assert r.headers["content-type"].startswith("application/json")
                assert int(r.headers["retry-after"]) >= 1
                refusal = r.json()
                assert refusal["status_code"] == 503
                assert "busy" in refusal["detail"] and "try again in about" in refusal["detail"]
                assert refusal["detail"].endswith("."), refusal["detail"]
                assert refusal["extra"]["running"] == 1 and refusal["extra"]["waiting"] == 1
                assert refusal["extra"]["queue_size"] == 1
            assert listing.status_code == 200 and doc["id"] in {d["id"] for d in listing.json()}
            assert sections.status_code == 200 and sections.json()["total"] >= 1
            assert health.status_code == 200 and health.json()["status"] == "ok"
            assert upload.status_code == 201, upload.text

            for t in threads:
                t.join(180)
            assert not any(t.is_alive() for t in threads)
            kinds = [k for k, _ in events]
            assert kinds.count("done") == 1 and "error" not in kinds, kinds
            assert second["r"].status_code == 200, second["r"].text
            # the accepted questions were stored once each; the refused ones left nothing
            assert [m["role"] for m in http.get(f"/api/sessions/{s1}").json()["messages"]] == ["user", "assistant"]
            assert [m["role"] for m in http.get(f"/api/sessions/{s2}").json()["messages"]] == ["user", "assistant"]
            assert http.get(f"/api/sessions/{s3}").json()["messages"] == []
            after = model_health(http)
            assert after["state"] == "idle" and after["queue_depth"] == 0 and after["avg_job_s"] > 0, after
    finally:
        server.stop()
        for t in threads:
            t.join(30)
    print(f"\nmodel busy (queue 1 running + 1 waiting, still {still['state']}): refusal {third_s * 1000:.0f} ms, "
          f"GET /api/documents {listing_s * 1000:.0f} ms, sections {sections_s * 1000:.0f} ms, health "
          f"{health_s * 1000:.0f} ms, upload {upload_s * 1000:.0f} ms; Retry-After {third.headers['retry-after']} s")


def test_load_small_run_keeps_every_row_and_answer(tmp_path: Path) -> None:
    report = run_load(clients=20, duration_s=20, max_requests=1500, queue_size=2, max_tokens=8, question_docs=1,
                      grace_s=60, data_dir=tmp_path / "data")
    assert report["problems"] == [], report["problems"]
    counts = report["status_counts_by_endpoint"]
    assert counts["upload"].get("201", 0) >= 1 and counts["list"].get("200", 0) >= 1, counts
    assert report["audit"]["answers_200"] >= 1, report["audit"]
    assert report["audit"]["documents_listed"] == report["audit"]["documents_in_sqlite"]
    assert report["server_log_tracebacks"] == 0
    lat = report["latency"]
    print(f"\nload: {report['requests']} requests in {report['wall_s']} s, statuses {report['status_counts']}; "
          f"non-model endpoints while generating p50 {lat['non_model_while_generating']['p50_ms']} ms / "
          f"p99 {lat['non_model_while_generating']['p99_ms']} ms (reads p50 {lat['reads_while_generating']['p50_ms']}"
          f" / p99 {lat['reads_while_generating']['p99_ms']} ms); 503s {report['model_503']}; "
          f"audit {report['audit']}")


def test_load_on_two_instances_sharing_postgresql_keeps_every_row_and_answer(tmp_path: Path, pg_url: str) -> None:
    """bench.load's mix and audit against two servers on one PostgreSQL database and one data folder, requests
    round-robin between them: the listing on each instance and the database rows are exactly the 201s − 204s,
    no orphan file, every answer stored once."""
    report = run_load(clients=20, duration_s=12, max_requests=1200, queue_size=2, max_tokens=8, question_docs=1,
                      grace_s=150, data_dir=tmp_path / "data", instances=2, database_url=pg_url)
    assert report["problems"] == [], report["problems"]
    assert report["instances"] == 2 and report["settings"]["database"] == "postgresql"
    assert "s3cret" not in str(report["settings"]["server_env"])
    counts = report["status_counts_by_endpoint"]
    assert counts["upload"].get("201", 0) >= 1 and counts["delete"].get("204", 0) >= 1, counts
    assert report["audit"]["answers_200"] >= 1 and report["server_log_tracebacks"] == 0, report["audit"]
    assert report["audit"]["documents_listed"] == report["audit"]["documents_in_database"]
    print(f"\nload on 2 instances + PostgreSQL: {report['requests']} requests, statuses {report['status_counts']}; "
          f"audit {report['audit']}")


# --- a question's place in the queue: taken when it is accepted, held to its end --------------------


def test_a_ticket_is_held_from_acceptance_to_the_end_and_released_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, seed=1, queue_size=0)
    registry = ModelRegistry(settings)
    engine = Engine(settings, registry)
    runtime = local_runtime(engine, registry.get(None))
    try:
        with runtime.reserve() as ticket:
            assert runtime.status()["queue_depth"] == 1
            with pytest.raises(QueueFull) as refused:
                runtime.reserve()
            assert refused.value.status_code == 503 and refused.value.extra["queue_size"] == 0
            # jobs run under the ticket are neither counted again nor refused, however many there are
            assert [runtime.submit(lambda n: n * 2, n, ticket=ticket).result() for n in range(3)] == [0, 2, 4]
            assert runtime.status()["queue_depth"] == 1
        assert runtime.status()["queue_depth"] == 0 and not ticket.held
        with ticket:  # a second end is a no-op, never a negative count
            pass
        assert runtime.status()["queue_depth"] == 0
        with pytest.raises(RuntimeError), runtime.reserve():  # however its block ends, it is given back
            assert runtime.status()["queue_depth"] == 1
            raise RuntimeError("the request failed between its acceptance and its answer")
        assert runtime.status()["queue_depth"] == 0
        # one way to give it back: its `with` block (no release() to forget, no garbage-collector safety net)
        assert not hasattr(Ticket, "release") and not hasattr(Ticket, "__del__")
    finally:
        engine.close()


def test_a_chunked_question_is_never_refused_halfway(tmp_path: Path) -> None:
    """Its map steps and reduce step are separate jobs; between two of them the model is idle for a
    moment, and another question must not take the slot it still needs (DOCQA_QUEUE_SIZE=0)."""
    settings = Settings(data_dir=tmp_path, seed=1, queue_size=0, chunk_context=1024, question_tokens=64,
                        answer_tokens=32, chunk_overlap=0, state_cache_bytes=0)
    registry = ModelRegistry(settings)
    spec = registry.get(None)
    engine = Engine(settings, registry)
    text = long_document(30).decode()
    doc = Document(id="d", filename="beds.txt", kind="text")
    sources = [(doc, [Section(id=1, ordinal=0, path=None, line_start=1, line_end=30, text=text)])]
    plan = engine.plan(spec, sources, "chunked")
    assert plan.mode == "chunked" and plan.n_chunks >= 2, plan
    attempts: list[str] = []
    done = threading.Event()

    def competitor() -> None:  # another question trying to get in, all along
        while not done.is_set():
            try:
                with engine.reserve(spec):
                    pass
                attempts.append("accepted")
            except QueueFull:
                attempts.append("refused")
            time.sleep(0.002)

    progress: list[dict[str, Any]] = []
    thread = threading.Thread(target=competitor)
    try:
        with engine.reserve(spec) as ticket:
            thread.start()
            answer = engine.answer(spec, plan, sources, "Which family rents bed 12?",
                                   AskOptions(max_tokens=16, sampling={"temperature": 0, "seed": 1}),
                                   on_event=lambda kind, p: progress.append(p) if kind == "progress" else None,
                                   ticket=ticket)
            done.set()
            thread.join()
        assert engine.model_health(spec)["queue_depth"] == 0
    finally:
        done.set()
        engine.close()
    assert answer.mode == "chunked" and answer.coverage
    assert answer.coverage["chunks_read"] == plan.n_chunks
    assert {p.get("chunk") for p in progress if p.get("phase") == "map"} == set(range(1, plan.n_chunks + 1))
    assert len(attempts) > 10 and set(attempts) == {"refused"}, attempts[:20]
    print(f"\nchunked over {plan.n_chunks} chunks: {len(attempts)} competing attempts, all refused up front")
