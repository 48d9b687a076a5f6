"""Batch questions, for real: the real app and worker thread, the real tiny model, real SQLite.

The crash test starts the real server as a subprocess, kills it with SIGKILL while a question is
being answered and starts it again on the same data folder.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench import load
from docqa.batches import CSV_COLUMNS, grounding_text
from docqa.engine.grounding import STATUSES

SAMPLING = {"temperature": 0, "seed": 1}
GARDEN, BAKERY = load.GARDEN.encode(), load.BAKERY.encode()  # the load test's documents
GARDEN_QUESTIONS = [
    "When does the garden open?",
    "How many raised beds are there?",
    "What is the tool shed code?",
    "Who collects the compost?",
    "How many families are on the waiting list?",
]


def upload(client, name: str, data: bytes) -> str:
    r = client.post("/api/documents", files={"file": (name, data, "text/plain")})
    assert r.status_code in (200, 201), r.text
    return r.json()["id"]


def finished(batch: dict) -> bool:
    return batch["status"] in ("done", "failed", "cancelled")


def wait_for(client, batch_id: str, timeout: float = 150.0, until=finished):
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/api/batches/{batch_id}")
        assert r.status_code == 200, r.text
        batch = r.json()
        if until(batch):
            return batch
        assert time.monotonic() < deadline, f"batch not finished after {timeout:g} s: {batch}"
        time.sleep(0.2)


# --- 1. one document, five questions: the document is read once --------------------------------------


def test_batch_reads_the_document_once(client):
    doc = upload(client, "garden.txt", GARDEN)
    prompt_tokens = client.post("/api/plan", json={"document_ids": [doc]}).json()["prompt_tokens"]
    t0 = time.monotonic()
    r = client.post("/api/batches", json={"document_ids": [doc], "questions": GARDEN_QUESTIONS,
                                          "max_tokens": 16, "sampling": SAMPLING})
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["status"] == "queued" and created["total"] == 5

    batch = wait_for(client, created["id"])
    wall = time.monotonic() - t0

    assert batch["status"] == "done" and batch["done"] == batch["total"] == 5
    results = batch["results"]
    assert [r["question_index"] for r in results] == [0, 1, 2, 3, 4]
    assert [r["question"] for r in results] == GARDEN_QUESTIONS
    for item in results:
        assert item["status"] == "done" and item["document_id"] is None and item["error"] is None
        assert item["answer"].strip() and item["mode"] == "whole" and item["attempts"] == 1
        # the answer's whole record, as a live answer has it: nothing is dropped by storing it
        assert item["stop_reason"] in ("eos", "length") and item["history"]["enabled"] is False, item
        assert "search" in item and "draft" in item
    sources = [r["timings"]["prefix_source"] for r in results]
    prefill = [r["timings"]["prefill_tokens"] for r in results]
    assert sources.count("evaluated") == 1 and sources.count("memory") == 4, sources
    first = sources.index("evaluated")
    assert prefill[first] >= prompt_tokens * 0.9  # the whole prompt: instructions + document
    assert all(p < 60 for i, p in enumerate(prefill) if i != first), prefill  # only the question
    assert sum(prefill) < prompt_tokens + 5 * 60, (sum(prefill), prompt_tokens)
    print(f"\nbatch of 5: prefill {prefill} = {sum(prefill)} tokens vs 5 × {prompt_tokens} = "
          f"{5 * prompt_tokens} read one by one; wall {wall:.1f} s")
    # listed, done
    listed = client.get("/api/batches").json()
    assert [(b["id"], b["status"], b["done"]) for b in listed] == [(created["id"], "done", 5)]


# --- 2. per document: one answer per document × question, CSV and JSON exports -----------------------


def test_per_document_batch_and_exports(client):
    garden, bakery = upload(client, "garden.txt", GARDEN), upload(client, "bakery.txt", BAKERY)
    questions = ["Who is named in the document?", "What time does it open?"]
    r = client.post("/api/batches", json={"document_ids": [garden, bakery], "questions": questions,
                                          "per_document": True, "max_tokens": 12, "sampling": SAMPLING})
    assert r.status_code == 202, r.text
    batch = wait_for(client, r.json()["id"])

    assert batch["status"] == "done" and batch["total"] == 4 and batch["per_document"] is True
    results = batch["results"]
    assert [(x["document_id"], x["question_index"]) for x in results] == [
        (garden, 0), (garden, 1), (bakery, 0), (bakery, 1)]
    assert [x["filename"] for x in results] == ["garden.txt", "garden.txt", "bakery.txt", "bakery.txt"]
    assert all(x["status"] == "done" and x["answer"].strip() for x in results)
    # each document was read once, its second question answered from the resident prefix
    assert [x["timings"]["prefix_source"] for x in results] == ["evaluated", "memory"] * 2

    json_results = client.get(f"/api/batches/{batch['id']}/results", params={"format": "json"})
    assert json_results.status_code == 200
    assert json_results.json() == results

    exported = client.get(f"/api/batches/{batch['id']}/results", params={"format": "csv"})
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    raw = exported.content
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: spreadsheets read it as UTF-8
    reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline=""))
    rows = list(reader)
    assert reader.fieldnames == CSV_COLUMNS
    assert {"filename", "question", "answer", "citations", "grounding", "sources", "mode", "status",
            "error"} <= set(CSV_COLUMNS)
    assert len(rows) == 4
    for row, item in zip(rows, results, strict=True):
        assert row["filename"] == item["filename"]
        assert row["question"] == item["question"] and row["question_no"] == str(item["question_index"] + 1)
        assert row["status"] == "done" and row["mode"] == "whole" and row["error"] == ""
        assert row["answer"].lstrip("'") == item["answer"]
        assert len(row["citations"].split("; ")) == len(item["citations"]) or not item["citations"]
        # grounding: the counts, and one source line per grounded or unsupported claim
        assert row["grounding"] == grounding_text(item["grounding"])
        assert row["grounding"].startswith(f"{item['grounding']['grounded']} grounded, "
                                           f"{item['grounding']['unsupported']} unsupported")
        checked = [c for c in item["claims"] if c["status"] in ("quoted", "supported", "unsupported")]
        assert len([ln for ln in row["sources"].split("\n") if ln]) == len(checked)
        for c in item["claims"]:
            assert c["status"] in STATUSES
            if c["status"] == "supported":
                assert c["passage"]["filename"] == item["filename"] and c["passage"]["text"] in (
                    GARDEN if item["filename"] == "garden.txt" else BAKERY).decode()
        if any(c["status"] == "unsupported" for c in item["claims"]):
            assert any("could not be found in the documents" in n for n in item["notes"])

    assert client.get(f"/api/batches/{batch['id']}/results", params={"format": "xml"}).status_code == 422


# --- 3. cancel --------------------------------------------------------------------------------------


@pytest.mark.both_databases
def test_cancel_batch(client):
    doc = upload(client, "garden.txt", GARDEN)
    r = client.post("/api/batches", json={"document_ids": [doc], "questions": GARDEN_QUESTIONS,
                                          "max_tokens": 16, "sampling": SAMPLING})
    assert r.status_code == 202
    batch_id = r.json()["id"]

    r = client.delete(f"/api/batches/{batch_id}")
    assert r.status_code == 200, r.text
    cancelled = r.json()
    assert cancelled["status"] == "cancelled" and cancelled["queued"] == 0 and cancelled["running"] == 0
    statuses = [x["status"] for x in cancelled["results"]]
    assert statuses == ["cancelled"] * 5, statuses

    again = client.delete(f"/api/batches/{batch_id}")  # idempotent
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    assert [x["status"] for x in again.json()["results"]] == statuses

    missing = client.delete("/api/batches/" + "0" * 32)
    assert missing.status_code == 404 and "no batch" in missing.json()["detail"]
    assert client.get("/api/batches/" + "0" * 32).status_code == 404

    # the worker stopped the question in flight and took the next batch: nothing late was written
    r = client.post("/api/batches", json={"document_ids": [doc], "questions": ["What is the tool shed code?"],
                                          "max_tokens": 8, "sampling": SAMPLING})
    follow = wait_for(client, r.json()["id"])
    assert follow["status"] == "done" and follow["results"][0]["answer"].strip()
    final = client.get(f"/api/batches/{batch_id}").json()
    assert final["status"] == "cancelled"
    assert [x["status"] for x in final["results"]] == ["cancelled"] * 5
    assert all(x["answer"] is None for x in final["results"])


# --- 5. validation ------------------------------------------------------------------------------------


@pytest.mark.both_databases
def test_refused_batches_store_nothing(client, settings):
    doc = upload(client, "garden.txt", GARDEN)
    before = client.get("/api/batches").json()
    cases = [
        ({"document_ids": [doc], "questions": []}, 422, "at least one question"),
        ({"document_ids": [], "questions": ["Why?"]}, 422, "at least one document"),
        ({"document_ids": ["f" * 32], "questions": ["Why?"]}, 404, "no document"),
        ({"document_ids": [doc, doc], "questions": ["Why?"]}, 422, "twice"),
        ({"document_ids": [doc], "questions": ["Why?", "   "]}, 422, "Question 2 is empty"),
        ({"document_ids": [doc], "questions": ["Why?"] * (settings.batch_max_questions + 1)}, 422, "at most"),
        ({"document_ids": [doc], "questions": ["why " * 5000]}, 422, "Question 1 is 19,999 bytes long"),
        ({"document_ids": [doc], "questions": ["why " * 700]}, 422, "tokens long"),
        ({"document_ids": [doc], "questions": ["Why?"], "mode": "fast"}, 422, "Unknown mode"),
        ({"document_ids": [doc], "questions": ["Why?"], "max_tokens": 0}, 422, "max_tokens"),
        ({"document_ids": [doc], "questions": ["Why?"], "sampling": {"warmth": 1}}, 422, "sampling"),
        ({"document_ids": [doc], "questions": ["Why?"], "model": "nope"}, 404, "no model"),
        ({"document_ids": [doc]}, 422, "missing or has invalid fields"),
    ]
    for body, status, words in cases:
        r = client.post("/api/batches", json=body)
        assert r.status_code == status, (body, r.text)
        detail = r.json()["detail"]
        assert words in detail and detail.endswith("."), (words, detail)
    assert client.get("/api/batches").json() == before == []


# --- 4. crash and resume ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(data_dir: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "DOCQA_DATA_DIR": str(data_dir), "DOCQA_SEED": "1", "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "docqa.cli", "serve", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[1])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return proc
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the server did not start: " + log.read_text()[-3000:])


def _kill(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
    if proc is not None:
        proc.wait(10)


def test_crash_and_resume_answers_each_question_once(tmp_path):
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    questions = GARDEN_QUESTIONS[:4]
    first = second = None
    try:
        port = _free_port()
        first = _start_server(data_dir, port, log)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as http:
            doc = upload(http, "garden.txt", GARDEN)
            r = http.post("/api/batches", json={"document_ids": [doc], "questions": questions,
                                                "max_tokens": 24, "sampling": SAMPLING})
            assert r.status_code == 202, r.text
            batch_id = r.json()["id"]
            # wait until one answer is written, the document's snapshot is on disk (its writer thread runs at
            # idle priority, so it may lag the answer) and the next question is being answered; pull the plug
            def snapshotted() -> bool:
                return any((data_dir / "state").rglob("*.json"))

            seen = wait_for(http, batch_id, until=lambda b: b["done"] >= 1 and b["running"] == 1 and snapshotted()
                            or b["done"] == 4)
            assert seen["done"] < 4, "the batch finished before it could be interrupted"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)

        with contextlib.closing(sqlite3.connect(data_dir / "docqa.sqlite3")) as db:
            in_flight = [row[0] for row in db.execute(
                "SELECT question_index FROM batch_items WHERE batch_id = ? AND status = 'running'", (batch_id,))]
        assert len(in_flight) == 1, in_flight  # the one being answered when it died
        done_before = {x["question_index"]: x for x in seen["results"] if x["status"] == "done"}
        assert done_before and in_flight[0] not in done_before

        port = _free_port()
        second = _start_server(data_dir, port, log)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            final = wait_for(http, batch_id)
            listed = http.get("/api/batches").json()
    finally:
        _kill(first)
        _kill(second)

    results = final["results"]
    assert final["status"] == "done" and final["done"] == final["total"] == 4
    assert len(results) == 4 and sorted(x["question_index"] for x in results) == [0, 1, 2, 3]
    assert [x["id"] for x in listed] == [batch_id]
    for x in results:
        assert x["status"] == "done" and x["answer"].strip() and x["error"] is None
        assert x["attempts"] <= 2
        if x["question_index"] in done_before:  # written once, before the crash, and left alone
            assert x["attempts"] == 1
            assert (x["answer"], x["timings"]) == (done_before[x["question_index"]]["answer"],
                                                   done_before[x["question_index"]]["timings"])
        elif x["question_index"] == in_flight[0]:  # lost with the process, redone once
            assert x["attempts"] == 2
            assert x["timings"]["prefix_source"] == "disk"  # the snapshot saved before the crash
        else:
            assert x["attempts"] == 1

